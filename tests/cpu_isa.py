"""The SIMD levels of fastgan._C that this CPU can execute (for tests that run every level)."""
from typing import List

_ORDER = ("scalar", "avx2", "avx512")


def runnable_isa_levels() -> List[str]:
    """Levels up to the one the CPU supports; empty when fastgan._C is not built."""
    try:
        from fastgan import _C
    except ImportError:
        return []
    return list(_ORDER[: _ORDER.index(_C.isa_detected()) + 1])
