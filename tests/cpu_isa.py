"""CPU test helpers: the SIMD levels of fastgan._C that this CPU can execute (for tests that run every level),
and a check that a kernel gives the same bits for any thread count."""
from typing import List

_ORDER = ("scalar", "avx2", "avx512")


def runnable_isa_levels() -> List[str]:
    """Levels up to the one the CPU supports; empty when fastgan._C is not built."""
    try:
        from fastgan import _C
    except ImportError:
        return []
    return list(_ORDER[: _ORDER.index(_C.isa_detected()) + 1])


def assert_same_for_any_thread_count(run) -> None:
    """``run()`` returns tensors; one thread and several threads (deterministic algorithms on) must give
    bitwise equal ones."""
    import torch

    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(max(2, threads))
        torch.use_deterministic_algorithms(True)
        many = run()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
    for a, e in zip(many, one):
        assert torch.equal(a, e)
