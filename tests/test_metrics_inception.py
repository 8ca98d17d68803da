"""FID Inception-v3: TF1 resize, forward shapes, weights files (pytorch-fid state dict, TorchScript), download."""
import hashlib

import numpy as np
import pytest
import torch

from fastgan.metrics import weights
from fastgan.metrics.inception import InceptionV3FID, resize_bilinear_tf1


def _tf1_resize_reference(img, h_out, w_out):
    """TF1 ResizeBilinear(align_corners=False, half_pixel_centers=False), written as loops."""
    h, w = img.shape
    out = np.zeros((h_out, w_out))
    for i in range(h_out):
        y = i * h / h_out
        y0 = int(np.floor(y)); y1 = min(y0 + 1, h - 1); ly = y - y0
        for j in range(w_out):
            x = j * w / w_out
            x0 = int(np.floor(x)); x1 = min(x0 + 1, w - 1); lx = x - x0
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * lx
            bot = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * lx
            out[i, j] = top + (bot - top) * ly
    return out


@pytest.mark.parametrize("shape_in,shape_out", [((5, 7), (3, 4)), ((4, 4), (9, 9)), ((6, 3), (6, 5))])
def test_resize_tf1_matches_definition(shape_in, shape_out):
    img = np.random.default_rng(0).uniform(0, 255, shape_in)
    got = resize_bilinear_tf1(torch.from_numpy(img)[None, None], shape_out)[0, 0].double().numpy()
    np.testing.assert_allclose(got, _tf1_resize_reference(img, *shape_out), rtol=1e-5, atol=1e-3)
    same = torch.rand(1, 3, 6, 5)
    assert torch.equal(resize_bilinear_tf1(same, (6, 5)), same)


def _random_inception(seed=0):
    torch.manual_seed(seed)
    model = InceptionV3FID()
    with torch.no_grad():   # non-trivial BatchNorm statistics so that fusing them is actually tested
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
    return model


@pytest.fixture(scope="module")
def pytorch_fid_file(tmp_path_factory):
    model = _random_inception()
    # pytorch-fid's file predates num_batches_tracked; write it the same way.
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("w") / "pt_inception-random.pth"
    torch.save(sd, path)
    return path, model


def test_forward_shapes_fused_weights_and_preprocess(pytorch_fid_file, monkeypatch):
    path, model = pytorch_fid_file
    monkeypatch.setenv(weights.ENV_WEIGHTS, str(path))
    det = weights.load_detector(device="cpu")           # found through $FASTGAN_INCEPTION_WEIGHTS, BN fused
    assert "sha256=" + hashlib.sha256(path.read_bytes()).hexdigest() in det.identity
    img = torch.randint(0, 256, (1, 3, 64, 48), dtype=torch.uint8)
    with torch.no_grad():
        out = det(img)
        ref = model(img)
    assert out["pool"].shape == (1, 2048) and out["logits"].shape == (1, 1008)
    assert torch.isfinite(out["pool"]).all() and (out["pool"] >= 0).all()    # post-ReLU average
    torch.testing.assert_close(out["pool"], ref["pool"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["logits"] - out["logits_unbiased"], model.fc.bias.expand(1, -1),
                               rtol=1e-5, atol=1e-5)
    # Preprocessing: the network input differs between the TF graph and pytorch-fid conventions.
    other = InceptionV3FID(preprocess="pytorch-fid")
    x_tf, x_pt = model.normalize(img), other.normalize(img)
    assert x_tf.shape == x_pt.shape == (1, 3, 299, 299)
    assert -1.0 <= float(x_pt.min()) and float(x_pt.max()) <= 1.0 and not torch.allclose(x_tf, x_pt)


def test_weights_file_errors(tmp_path, monkeypatch):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(weights.WeightsError, match="bad.pth.*not a pytorch-fid"):
        weights.load_detector(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(weights.WeightsError, match="junk.pth"):
        weights.load_detector(junk)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        weights.load_detector(tmp_path / "nope.pth")
    monkeypatch.delenv(weights.ENV_WEIGHTS, raising=False)
    monkeypatch.setenv("FASTGAN_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="FASTGAN_INCEPTION_WEIGHTS"):
        weights.resolve_weights(allow_download=False)


def test_download_checks_sha256_before_the_file_appears(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"weights" * 1000)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "w.pth"
    with pytest.raises(weights.WeightsError, match="SHA-256 mismatch"):
        weights.download(src.as_uri(), dest, sha256_prefix="00000000" if digest[:8] != "00000000" else "1",
                         progress=False)
    assert not dest.exists() and list(dest.parent.iterdir()) == []          # temp file removed too
    weights.download(src.as_uri(), dest, sha256_prefix=digest[:8], progress=False)
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(weights.WeightsError):
        weights.download(src.as_uri(), dest, sha256="0" * 64, progress=False)
    assert dest.read_bytes() == src.read_bytes()                             # old file untouched


class _NVlabsStyle(torch.nn.Module):
    """Same calling convention as NVlabs' TorchScript detector: uint8 NCHW in, features or probabilities out."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 2048)
        self.head = torch.nn.Linear(2048, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        feats = self.proj(img.float().mean(dim=(2, 3)) / 255)
        if return_features:
            return feats
        logits = feats @ self.head.weight.t()
        if not no_output_bias:
            logits = logits + self.head.bias
        return torch.softmax(logits, dim=1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_detector_file(tmp_path):
    torch.manual_seed(0)
    mod = torch.jit.script(_NVlabsStyle())
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.save(mod, str(path))
    det = weights.load_detector(path)
    assert isinstance(det, weights.TorchScriptDetector) and det.identity.startswith("torchscript")
    det.with_logits = True
    img = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    out = det(img)
    torch.testing.assert_close(out["pool"], mod(img, return_features=True))
    probs = torch.softmax(out["logits_unbiased"], dim=1)
    torch.testing.assert_close(probs, mod(img, no_output_bias=True).double(), rtol=1e-6, atol=1e-9)
