"""StyleGAN3 networks against the clean-room spec (network-spec.md sections 3-6) and the golden nets.

* the layer schedule against the spec's four worked tables (every column) and its name lists;
* the Kaiser/jinc filter design against scipy and the golden filter buffers;
* the Fourier-feature input and its ``transform`` buffer against a direct evaluation of the section 3.4
  formula (float64), and exact pixel shifts/rotations;
* the fixed summation order of the input transform;
* the SynthesisLayer rules (magnitude EMA before the input gain, ToRGB clamp, output_scale, noise_mode,
  fused_modconv, precision) and truncation cutoff routing (golden gradients w.r.t. ws: test_nets_golden);
* every G config recorded by NVlabs' stylegan3 ``train.py`` builds, runs and loads from a snapshot.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import scipy.special
import torch

import fastgan
from fastgan import backends
from fastgan.nets import stylegan3
from fastgan.nets.filter_design import design_lowpass_filter, jinc_lowpass, kaiser_beta, sinc_lowpass
from fastgan.nets.sg3_schedule import layer_resampling, synthesis_schedule

from golden import assert_close, golden_network, npz
from test_nets_golden import golden_net, io as golden_io

# ----------------------------------------------------------------------------------------------------------
# The worked tables of network-spec.md 3.6, verbatim: i | name | C in>out | size in>out | s in>out | f_c | f_t |
# f_h | tmp s | up/down | taps | down filter | padding [lo, hi] | fp16.

TABLES = {
    "T-256": (dict(img_resolution=256, channel_base=32768, channel_max=512), """
0|L0_36_512|512>512|36>36|16>16|2.0000|4.2871|6.0000|32|2/2|12/12|1-D|[9, 8]|no
1|L1_36_512|512>512|36>36|16>16|2.8284|5.7891|5.1716|32|2/2|12/12|1-D|[9, 8]|no
2|L2_36_512|512>512|36>36|16>16|4.0000|7.8173|4.0000|32|2/2|12/12|1-D|[9, 8]|no
3|L3_52_512|512>512|36>52|16>32|5.6569|10.5561|10.3431|64|4/2|24/12|1-D|[-6, -9]|yes
4|L4_52_512|512>512|52>52|32>32|8.0000|14.2544|8.0000|64|2/2|12/12|1-D|[9, 8]|yes
5|L5_84_512|512>512|52>84|32>64|11.3137|19.2484|20.6863|128|4/2|24/12|1-D|[-6, -9]|yes
6|L6_84_512|512>512|84>84|64>64|16.0000|25.9921|16.0000|128|2/2|12/12|1-D|[9, 8]|yes
7|L7_148_512|512>512|84>148|64>128|22.6274|35.0984|41.3726|256|4/2|24/12|1-D|[-6, -9]|yes
8|L8_148_512|512>512|148>148|128>128|32.0000|47.3951|32.0000|256|2/2|12/12|1-D|[9, 8]|yes
9|L9_148_362|512>362|148>148|128>128|45.2548|64.0000|18.7452|256|2/2|12/12|1-D|[9, 8]|yes
10|L10_276_256|362>256|148>276|128>256|64.0000|86.4224|64.0000|512|4/2|24/12|1-D|[-6, -9]|yes
11|L11_276_181|256>181|276>276|256>256|90.5097|116.7005|37.4903|512|2/2|12/12|1-D|[9, 8]|yes
12|L12_276_128|181>128|276>276|256>256|128.0000|157.5865|29.5865|512|2/2|12/12|1-D|[9, 8]|yes
13|L13_256_128|128>128|276>256|256>256|128.0000|157.5865|29.5865|512|2/2|12/12|1-D|[-11, -12]|yes
14|L14_256_3|128>3|256>256|256>256|128.0000|157.5865|29.5865|256|1/1|1/1|none|[0, 0]|yes
"""),
    "R-256": (dict(img_resolution=256, channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True), """
0|L0_36_1024|1024>1024|36>36|16>16|2.0000|4.2871|6.0000|32|2/2|12/12|radial 2-D|[11, 10]|no
1|L1_36_1024|1024>1024|36>36|16>16|2.8284|5.7891|5.1716|32|2/2|12/12|radial 2-D|[11, 10]|no
2|L2_36_1024|1024>1024|36>36|16>16|4.0000|7.8173|4.0000|32|2/2|12/12|radial 2-D|[11, 10]|no
3|L3_52_1024|1024>1024|36>52|16>32|5.6569|10.5561|10.3431|64|4/2|24/12|radial 2-D|[-2, -5]|yes
4|L4_52_1024|1024>1024|52>52|32>32|8.0000|14.2544|8.0000|64|2/2|12/12|radial 2-D|[11, 10]|yes
5|L5_84_1024|1024>1024|52>84|32>64|11.3137|19.2484|20.6863|128|4/2|24/12|radial 2-D|[-2, -5]|yes
6|L6_84_1024|1024>1024|84>84|64>64|16.0000|25.9921|16.0000|128|2/2|12/12|radial 2-D|[11, 10]|yes
7|L7_148_1024|1024>1024|84>148|64>128|22.6274|35.0984|41.3726|256|4/2|24/12|radial 2-D|[-2, -5]|yes
8|L8_148_1024|1024>1024|148>148|128>128|32.0000|47.3951|32.0000|256|2/2|12/12|radial 2-D|[11, 10]|yes
9|L9_148_724|1024>724|148>148|128>128|45.2548|64.0000|18.7452|256|2/2|12/12|radial 2-D|[11, 10]|yes
10|L10_276_512|724>512|148>276|128>256|64.0000|86.4224|64.0000|512|4/2|24/12|radial 2-D|[-2, -5]|yes
11|L11_276_362|512>362|276>276|256>256|90.5097|116.7005|37.4903|512|2/2|12/12|radial 2-D|[11, 10]|yes
12|L12_276_256|362>256|276>276|256>256|128.0000|157.5865|29.5865|512|2/2|12/12|1-D|[11, 10]|yes
13|L13_256_256|256>256|276>256|256>256|128.0000|157.5865|29.5865|512|2/2|12/12|1-D|[-9, -10]|yes
14|L14_256_3|256>3|256>256|256>256|128.0000|157.5865|29.5865|256|1/1|1/1|none|[0, 0]|yes
"""),
    "T-1024": (dict(img_resolution=1024, channel_base=32768, channel_max=512), """
0|L0_36_512|512>512|36>36|16>16|2.0000|4.2871|6.0000|32|2/2|12/12|1-D|[9, 8]|no
1|L1_36_512|512>512|36>36|16>16|3.1748|6.4980|4.8252|32|2/2|12/12|1-D|[9, 8]|no
2|L2_52_512|512>512|36>52|16>32|5.0397|9.8492|10.9603|64|4/2|24/12|1-D|[-6, -9]|no
3|L3_52_512|512>512|52>52|32>32|8.0000|14.9285|8.0000|64|2/2|12/12|1-D|[9, 8]|no
4|L4_84_512|512>512|52>84|32>64|12.6992|22.6274|19.3008|128|4/2|24/12|1-D|[-6, -9]|no
5|L5_148_512|512>512|84>148|64>128|20.1587|34.2968|43.8413|256|4/2|24/12|1-D|[-6, -9]|yes
6|L6_148_512|512>512|148>148|128>128|32.0000|51.9842|32.0000|256|2/2|12/12|1-D|[9, 8]|yes
7|L7_276_323|512>323|148>276|128>256|50.7968|78.7932|77.2032|512|4/2|24/12|1-D|[-6, -9]|yes
8|L8_276_203|323>203|276>276|256>256|80.6349|119.4282|47.3651|512|2/2|12/12|1-D|[9, 8]|yes
9|L9_532_128|203>128|276>532|256>512|128.0000|181.0193|128.0000|1024|4/2|24/12|1-D|[-6, -9]|yes
10|L10_1044_81|128>81|532>1044|512>1024|203.1873|274.3740|308.8127|2048|4/2|24/12|1-D|[-6, -9]|yes
11|L11_1044_51|81>51|1044>1044|1024>1024|322.5398|415.8732|189.4602|2048|2/2|12/12|1-D|[9, 8]|yes
12|L12_1044_32|51>32|1044>1044|1024>1024|512.0000|630.3459|118.3459|2048|2/2|12/12|1-D|[9, 8]|yes
13|L13_1024_32|32>32|1044>1024|1024>1024|512.0000|630.3459|118.3459|2048|2/2|12/12|1-D|[-11, -12]|yes
14|L14_1024_3|32>3|1024>1024|1024>1024|512.0000|630.3459|118.3459|1024|1/1|1/1|none|[0, 0]|yes
"""),
    "R-1024": (dict(img_resolution=1024, channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True), """
0|L0_36_1024|1024>1024|36>36|16>16|2.0000|4.2871|6.0000|32|2/2|12/12|radial 2-D|[11, 10]|no
1|L1_36_1024|1024>1024|36>36|16>16|3.1748|6.4980|4.8252|32|2/2|12/12|radial 2-D|[11, 10]|no
2|L2_52_1024|1024>1024|36>52|16>32|5.0397|9.8492|10.9603|64|4/2|24/12|radial 2-D|[-2, -5]|no
3|L3_52_1024|1024>1024|52>52|32>32|8.0000|14.9285|8.0000|64|2/2|12/12|radial 2-D|[11, 10]|no
4|L4_84_1024|1024>1024|52>84|32>64|12.6992|22.6274|19.3008|128|4/2|24/12|radial 2-D|[-2, -5]|no
5|L5_148_1024|1024>1024|84>148|64>128|20.1587|34.2968|43.8413|256|4/2|24/12|radial 2-D|[-2, -5]|yes
6|L6_148_1024|1024>1024|148>148|128>128|32.0000|51.9842|32.0000|256|2/2|12/12|radial 2-D|[11, 10]|yes
7|L7_276_645|1024>645|148>276|128>256|50.7968|78.7932|77.2032|512|4/2|24/12|radial 2-D|[-2, -5]|yes
8|L8_276_406|645>406|276>276|256>256|80.6349|119.4282|47.3651|512|2/2|12/12|radial 2-D|[11, 10]|yes
9|L9_532_256|406>256|276>532|256>512|128.0000|181.0193|128.0000|1024|4/2|24/12|radial 2-D|[-2, -5]|yes
10|L10_1044_161|256>161|532>1044|512>1024|203.1873|274.3740|308.8127|2048|4/2|24/12|radial 2-D|[-2, -5]|yes
11|L11_1044_102|161>102|1044>1044|1024>1024|322.5398|415.8732|189.4602|2048|2/2|12/12|radial 2-D|[11, 10]|yes
12|L12_1044_64|102>64|1044>1044|1024>1024|512.0000|630.3459|118.3459|2048|2/2|12/12|1-D|[11, 10]|yes
13|L13_1024_64|64>64|1044>1024|1024>1024|512.0000|630.3459|118.3459|2048|2/2|12/12|1-D|[-9, -10]|yes
14|L14_1024_3|64>3|1024>1024|1024>1024|512.0000|630.3459|118.3459|1024|1/1|1/1|none|[0, 0]|yes
"""),
}


def _pair(text: str, sep: str):
    a, b = text.split(sep)
    return int(a), int(b)


@pytest.mark.parametrize("table", list(TABLES))
def test_schedule_matches_worked_table(table):
    kwargs, text = TABLES[table]
    sched = synthesis_schedule(img_channels=3, **kwargs)
    # every table's input: C = ch[0], size 36, s = 16, bandwidth = first cutoff 2
    assert (sched.input.channels, sched.input.size) == (kwargs["channel_max"], 36)
    assert (float(sched.input.sampling_rate), float(sched.input.bandwidth)) == (16.0, 2.0)
    rows = [line.split("|") for line in text.strip().splitlines()]
    assert len(rows) == len(sched.layers) == 15
    prev = None
    for cells, row in zip(rows, sched.layers):
        i, name, ch, size, rate, fc, ft, fh, tmp, updown, taps, down_kind, pad, fp16 = cells
        what = f"{table} {name}"
        assert (row.index, row.name) == (int(i), name), what
        assert (row.in_channels, row.out_channels) == _pair(ch, ">"), what
        assert (row.in_size, row.out_size) == _pair(size, ">"), what
        assert (row.in_sampling_rate, row.out_sampling_rate) == _pair(rate, ">"), what
        for got, want in ((row.out_cutoff, fc), (row.out_stopband, ft), (row.out_half_width, fh)):
            assert abs(float(got) - float(want)) <= 5e-5, f"{what}: {got} vs {want}"
        assert row.tmp_sampling_rate == int(tmp), what
        assert (row.up_factor, row.down_factor) == _pair(updown, "/"), what
        assert (row.up_taps, row.down_taps) == _pair(taps, "/"), what
        kind = "none" if row.down_taps == 1 else ("radial 2-D" if row.down_radial else "1-D")
        assert kind == down_kind, what
        lo, hi = (int(v) for v in pad.strip("[]").split(","))
        assert row.padding == (lo, hi, lo, hi), what
        assert row.use_fp16 == (fp16 == "yes"), what
        assert row.is_torgb == (row.index == 14) and row.is_critically_sampled == (row.index >= 12), what
        assert row.conv_kernel == (1 if row.is_torgb or kwargs.get("conv_kernel") == 1 else 3), what
        # a layer's input values are the previous layer's output values (layer 0: its own)
        src = prev or row
        assert (row.in_cutoff, row.in_half_width) == (src.out_cutoff, src.out_half_width), what
        prev = row


NAME_LISTS = [
    (dict(img_resolution=512, channel_base=32768, channel_max=512),
     "L0_36_512 L1_36_512 L2_52_512 L3_52_512 L4_84_512 L5_84_512 L6_148_512 L7_148_483 L8_276_323 L9_276_215 "
     "L10_532_144 L11_532_96 L12_532_64 L13_512_64 L14_512_3"),
    (dict(img_resolution=512, channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True),
     "L0_36_1024 L1_36_1024 L2_52_1024 L3_52_1024 L4_84_1024 L5_84_1024 L6_148_1024 L7_148_967 L8_276_645 "
     "L9_276_431 L10_532_287 L11_532_192 L12_532_128 L13_512_128 L14_512_3"),
    (dict(img_resolution=256, channel_base=16384, channel_max=512),
     "L6_84_512 L7_148_362 L8_148_256 L9_148_181 L10_276_128 L11_276_91 L12_276_64 L13_256_64 L14_256_3"),
    (dict(img_resolution=256, channel_base=32768, channel_max=1024, conv_kernel=1, use_radial_filters=True),
     "L6_84_1024 L7_148_724 L8_148_512 L9_148_362 L10_276_256 L11_276_181 L12_276_128 L13_256_128 L14_256_3"),
]


@pytest.mark.parametrize("kwargs, names", NAME_LISTS, ids=["T-512", "R-512", "T-256-cbase16384", "R-256-cbase16384"])
def test_schedule_layer_names(kwargs, names):
    got = synthesis_schedule(img_channels=3, **kwargs).names
    assert got[-len(names.split()):] == names.split()
    if kwargs["channel_base"] == 16384:  # the paper ablation: layers 0-6 as with channel_base 32768
        assert got[:7] == synthesis_schedule(img_channels=3, img_resolution=256).names[:7]


@pytest.mark.parametrize("kwargs, n_params", [
    (dict(img_resolution=1024, channel_base=32768, channel_max=512), 22_313_167),
    (dict(img_resolution=1024, channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True),
     15_093_151),
    (dict(img_resolution=256, channel_base=32768, channel_max=512), 28_472_133),
    (dict(img_resolution=256, channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True),
     18_816_387),
], ids=["T-1024", "R-1024", "T-256", "R-256"])
def test_full_size_generators_key_and_parameter_counts(kwargs, n_params):
    """Spec 3.7 reference sizes, on the meta device (no memory): 114 state-dict keys, exact parameter counts."""
    with torch.device("meta"):
        G = stylegan3.Generator(z_dim=512, c_dim=0, w_dim=512, img_channels=3, **kwargs)
    assert len(G.state_dict()) == 114
    assert sum(p.numel() for p in G.parameters()) == n_params
    sched = synthesis_schedule(img_channels=3, **kwargs)
    assert G.synthesis.layer_names == sched.names
    for row in sched.layers:
        layer = getattr(G.synthesis, row.name)
        assert tuple(layer.padding) == row.padding and layer.tmp_sampling_rate == row.tmp_sampling_rate
        assert layer.use_fp16 == row.use_fp16 and layer.down_radial == row.down_radial


def test_layer_resampling_non_square_and_errors():
    geo = layer_resampling(False, False, [36, 40], [52, 52], 16, 32)
    # per axis (out - 1)*2 + 1 - (in + 2)*4 + 23 + 11: x 103 - 152 + 34 = -15, y 103 - 168 + 34 = -31;
    # lo = floor((total + 4) / 2), hi = total - lo
    assert (geo.up_factor, geo.down_factor, geo.up_taps, geo.down_taps) == (4, 2, 24, 12)
    assert geo.padding == (-6, -9, -14, -17)
    geo = layer_resampling(False, False, [36, 40], [36, 40], 16, 16)
    assert geo.padding == (9, 8, 9, 8)
    with pytest.raises(ValueError, match="in_sampling_rate must divide"):   # 24 / 16 is not an integer
        layer_resampling(False, False, 36, 36, 16, 24, lrelu_upsampling=1)
    with pytest.raises(ValueError, match="conv_kernel"):
        layer_resampling(False, False, 36, 36, 16, 16, conv_kernel=0)
    with pytest.raises(ValueError, match="in_size"):
        layer_resampling(False, False, [36, 36, 36], 36, 16, 16)
    with pytest.raises(ValueError, match="num_critical"):
        synthesis_schedule(img_resolution=32, img_channels=3, num_layers=2, num_critical=2)


# ----------------------------------------------------------------------------------------------------------
# Filter design


@pytest.mark.parametrize("numtaps, cutoff, width, fs", [
    (12, 2.0, 12.0, 32), (24, 5.656854, 20.686, 64), (12, 128.0, 59.17, 512),  # Kaiser A > 50
    (12, 3.0, 4.0, 32),                                                       # 21 < A <= 50
    (6, 1.0, 1.0, 32),                                                        # A <= 21: rectangular window
    (7, 0.9, 3.0, 8),                                                         # odd taps
])
def test_sinc_lowpass_is_scipy_firwin(numtaps, cutoff, width, fs):
    ours = sinc_lowpass(numtaps, cutoff, width, fs)
    np.testing.assert_allclose(ours, scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs), rtol=1e-12, atol=1e-15)
    atten = scipy.signal.kaiser_atten(numtaps, width / (fs / 2))
    assert kaiser_beta(numtaps, width, fs) == pytest.approx(scipy.signal.kaiser_beta(atten), rel=1e-12, abs=1e-15)
    torch.testing.assert_close(design_lowpass_filter(numtaps, cutoff, width, fs),
                               torch.from_numpy(ours).float(), rtol=0, atol=0)


def _jinc_direct(numtaps, cutoff, width, fs):
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    win = scipy.signal.windows.kaiser(numtaps, beta)
    out = np.empty((numtaps, numtaps))
    for a in range(numtaps):
        for b in range(numtaps):
            r = math.hypot(a - (numtaps - 1) / 2, b - (numtaps - 1) / 2) / fs
            out[a, b] = scipy.special.j1(2 * math.pi * cutoff * r) / (math.pi * r) * win[a] * win[b]
    return out / out.sum()


@pytest.mark.parametrize("numtaps, cutoff, width, fs", [(12, 2.0, 12.0, 32), (12, 90.5, 75.0, 512), (6, 1.0, 1.0, 32)])
def test_jinc_lowpass_matches_direct_formula(numtaps, cutoff, width, fs):
    ours = jinc_lowpass(numtaps, cutoff, width, fs)
    np.testing.assert_allclose(ours, _jinc_direct(numtaps, cutoff, width, fs), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ours, ours.T, rtol=0, atol=1e-15)              # radial symmetry
    np.testing.assert_allclose(ours, np.rot90(ours), rtol=0, atol=1e-15)
    assert design_lowpass_filter(numtaps, cutoff, width, fs, radial=True).shape == (numtaps, numtaps)


def test_design_lowpass_filter_identity_and_errors():
    assert design_lowpass_filter(1, 2.0, 4.0, 32) is None
    assert design_lowpass_filter(1, 2.0, 4.0, 32, radial=True) is None
    with pytest.raises(ValueError, match="even numtaps"):
        design_lowpass_filter(7, 2.0, 4.0, 32, radial=True)
    with pytest.raises(ValueError, match="cutoff"):
        design_lowpass_filter(12, 16.0, 4.0, 32)
    with pytest.raises(ValueError, match="width"):
        design_lowpass_filter(12, 2.0, 0.0, 32)
    with pytest.raises(ValueError, match="numtaps"):
        design_lowpass_filter(0, 2.0, 4.0, 32)


@pytest.mark.parametrize("name", ["sg3_G_T", "sg3_G_R"])
def test_filters_match_golden_buffers(name):
    """Each golden layer's up/down filter equals the design for that layer's schedule row."""
    kw = golden_network(name)["init_kwargs"]
    sd = npz(f"{name}.state_dict.npz")
    sched = synthesis_schedule(kw["img_resolution"], kw["img_channels"], channel_base=kw["channel_base"],
                               channel_max=kw["channel_max"], num_fp16_res=kw["num_fp16_res"],
                               **{k: kw[k] for k in ("conv_kernel", "use_radial_filters") if k in kw})
    seen = 0
    for row in sched.layers:
        fs = row.tmp_sampling_rate
        for key, want in ((f"synthesis.{row.name}.up_filter",
                           design_lowpass_filter(row.up_taps, row.in_cutoff, 2 * row.in_half_width, fs)),
                          (f"synthesis.{row.name}.down_filter",
                           design_lowpass_filter(row.down_taps, row.out_cutoff, 2 * row.out_half_width, fs,
                                                 radial=row.down_radial))):
            if want is None:
                assert key not in sd, key
                continue
            seen += 1
            torch.testing.assert_close(want, torch.from_numpy(sd[key]), rtol=0, atol=1e-7, msg=key)
    assert seen == 28  # up and down filters of the 14 non-ToRGB layers
    if name == "sg3_G_R":
        assert sum(sd[k].ndim == 2 for k in sd if k.endswith("down_filter")) == 14 - kw.get("num_critical", 2)


# ----------------------------------------------------------------------------------------------------------
# SynthesisInput and its transform


def _input_direct(inp: stylegan3.SynthesisInput, w: torch.Tensor) -> np.ndarray:
    """Spec 3.4 in float64: evaluate the untransformed features at T.p for every pixel centre p."""
    f64 = lambda t: t.detach().double().numpy()  # noqa: E731
    aff_w, aff_b = f64(inp.affine.weight) / math.sqrt(inp.w_dim), f64(inp.affine.bias)
    freqs, phases, weight, user = f64(inp.freqs), f64(inp.phases), f64(inp.weight), f64(inp.transform)
    width, height = (int(v) for v in inp.size)
    sr, bw = float(inp.sampling_rate), float(inp.bandwidth)
    out = np.empty((w.shape[0], inp.channels, height, width))
    for n, wn in enumerate(f64(w)):
        rc, rs, tx, ty = (wn @ aff_w.T + aff_b) / math.hypot(*(wn @ aff_w.T + aff_b)[:2])
        rot = np.array([[rc, -rs, 0], [rs, rc, 0], [0, 0, 1]])
        shift = np.array([[1, 0, -tx], [0, 1, -ty], [0, 0, 1]])
        t = rot @ shift @ user
        amp = np.clip(1 - (np.linalg.norm(freqs @ t[:2, :2], axis=1) - bw) / (sr / 2 - bw), 0, 1)
        gx = (np.arange(width) + 0.5 - width / 2) / sr
        gy = (np.arange(height) + 0.5 - height / 2) / sr
        px, py = np.meshgrid(gx, gy)                       # [H, W]
        qx = t[0, 0] * px + t[0, 1] * py + t[0, 2]
        qy = t[1, 0] * px + t[1, 1] * py + t[1, 2]
        feat = np.sin(2 * math.pi * (qx[..., None] * freqs[:, 0] + qy[..., None] * freqs[:, 1] + phases)) * amp
        out[n] = np.einsum("hwc,oc->ohw", feat, weight) / math.sqrt(inp.channels)
    return out


def _random_input(learned: bool, size=(20, 16)) -> stylegan3.SynthesisInput:
    torch.manual_seed(3)
    inp = stylegan3.SynthesisInput(w_dim=8, channels=6, size=list(size), sampling_rate=16.0, bandwidth=2.0)
    if learned:
        with torch.no_grad():
            inp.affine.weight.normal_()
    return inp


def test_synthesis_input_state_order_and_initial_affine():
    inp = _random_input(learned=False)
    assert list(inp.state_dict()) == ["weight", "transform", "freqs", "phases", "affine.weight", "affine.bias"]
    assert torch.equal(inp.affine.weight, torch.zeros(4, 8))
    assert inp.affine.bias.tolist() == [1, 0, 0, 0] and torch.equal(inp.transform, torch.eye(3))
    assert float(inp.freqs.norm(dim=1).max()) < 2.0        # inside the disc of radius bandwidth
    assert float(inp.phases.abs().max()) <= 0.5


@pytest.mark.parametrize("transform", ["identity", "rotate-translate", "scale"])
def test_synthesis_input_matches_spec_formula(transform):
    inp = _random_input(learned=True)
    a = 0.7
    user = {"identity": np.eye(3),
            "rotate-translate": np.array([[math.cos(a), -math.sin(a), 0.3], [math.sin(a), math.cos(a), -0.2], [0, 0, 1]]),
            "scale": np.diag([3.0, 3.0, 1.0])}[transform]   # scaling pushes frequencies out of band: damping
    inp.transform.copy_(torch.from_numpy(user))
    w = torch.randn(3, 8)
    got = inp(w)
    assert got.shape == (3, 6, 16, 20) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), torch.from_numpy(_input_direct(inp, w)), rtol=1e-5, atol=1e-5)


def test_input_transform_sums_in_its_fixed_order():
    """The [N, 4] input affine is bit-exactly the documented lane order (any BLAS), and the linear map."""
    torch.manual_seed(4)
    x, w, b = torch.randn(3, 10), torch.randn(4, 10), torch.randn(4)   # K = 10: the last lanes are padded
    got = stylegan3._lane_order_linear(x, w, b)
    f32 = np.float32
    want = np.empty((3, 4), np.float32)
    for n, xn in enumerate(x.numpy()):
        for o, (wo, bo) in enumerate(zip(w.numpy(), b.numpy())):
            lanes = [f32(0)] * 4
            for k in range(10):
                lanes[k % 4] = f32(lanes[k % 4] + f32(xn[k] * wo[k]))
            want[n, o] = f32(f32(f32(lanes[0] + lanes[2]) + f32(lanes[1] + lanes[3])) + bo)
    assert np.array_equal(got.numpy(), want)
    torch.testing.assert_close(got.double(), x.double() @ w.double().T + b.double(), rtol=1e-6, atol=1e-6)
    inp = _random_input(learned=True)
    a = inp.affine
    torch.testing.assert_close(stylegan3._lane_order_linear(x[:, :8], a.weight * a.weight_gain, a.bias), a(x[:, :8]),
                               rtol=1e-6, atol=1e-6)


def test_transform_translation_by_one_pixel_shifts_features():
    inp = _random_input(learned=True)
    w = torch.randn(2, 8)
    base = inp(w)
    inp.transform.copy_(torch.tensor([[1, 0, 1 / 16.0], [0, 1, 0], [0, 0, 1]]))   # sample at p + one pixel in x
    torch.testing.assert_close(inp(w)[..., :-1], base[..., 1:], rtol=0, atol=2e-5)
    inp.transform.copy_(torch.tensor([[1, 0, 0], [0, 1, -2 / 16.0], [0, 0, 1]]))  # two pixels up in y
    torch.testing.assert_close(inp(w)[:, :, 2:], base[:, :, :-2], rtol=0, atol=2e-5)


def test_transform_rotation_by_90_degrees_rotates_features():
    inp = _random_input(learned=False, size=(16, 16))   # identity learned transform, square centred grid
    w = torch.randn(2, 8)
    base = inp(w)
    inp.transform.copy_(torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    torch.testing.assert_close(inp(w), torch.rot90(base, 1, dims=(2, 3)), rtol=0, atol=2e-5)


# ----------------------------------------------------------------------------------------------------------
# SynthesisLayer rules


def _layer(is_torgb=False, **kw) -> stylegan3.SynthesisLayer:
    torch.manual_seed(5)
    args = dict(w_dim=8, is_torgb=is_torgb, is_critically_sampled=is_torgb, use_fp16=False, in_channels=4,
                out_channels=3 if is_torgb else 5, in_size=12, out_size=12, in_sampling_rate=8,
                out_sampling_rate=8, in_cutoff=2.0, out_cutoff=2.0, in_half_width=1.5, out_half_width=1.5)
    args.update(kw)
    return stylegan3.SynthesisLayer(**args)


def test_layer_state_order_and_attributes():
    layer = _layer(conv_kernel=3)
    assert list(layer.state_dict()) == ["weight", "bias", "magnitude_ema", "up_filter", "down_filter",
                                        "affine.weight", "affine.bias"]
    assert layer.affine.bias.tolist() == [1.0] * 4 and float(layer.magnitude_ema) == 1.0
    assert (layer.tmp_sampling_rate, layer.up_factor, layer.down_factor, layer.up_taps, layer.down_taps) == (16, 2, 2, 12, 12)
    assert layer.in_size.tolist() == [12, 12] and isinstance(layer.padding, list)
    torgb = _layer(is_torgb=True, conv_kernel=3)
    assert torgb.conv_kernel == 1 and torgb.weight.shape == (3, 4, 1, 1)
    assert torgb.up_filter is None and torgb.down_filter is None
    assert list(torgb.state_dict()) == ["weight", "bias", "magnitude_ema", "affine.weight", "affine.bias"]


def test_magnitude_ema_is_updated_before_the_input_gain_is_read():
    layer = _layer(magnitude_ema_beta=0.75)
    layer.magnitude_ema.fill_(4.0)
    x, w = torch.randn(2, 4, 12, 12) * 3, torch.randn(2, 8)
    with torch.no_grad():
        stale = layer(x, w)                           # gain rsqrt(4)
        y = layer(x, w, update_emas=True)
        expected_ema = 0.75 * 4.0 + 0.25 * float(x.square().mean())
        assert float(layer.magnitude_ema) == pytest.approx(expected_ema, rel=1e-6)
        torch.testing.assert_close(y, layer(x, w), rtol=0, atol=0)   # the updated value, read in the same call
        assert not torch.allclose(y, stale)
        # the gain scales the input (after demodulation), so it is not normalised away: direct check
        layer.magnitude_ema.fill_(1.0)
        torch.testing.assert_close(layer(x * (expected_ema ** -0.5), w), y, rtol=1e-5, atol=1e-6)


def test_torgb_is_clamped():
    layer = _layer(is_torgb=True, conv_clamp=None)
    with torch.no_grad():
        layer.bias.fill_(0.3)
        x, w = torch.randn(2, 4, 12, 12) * 50, torch.randn(2, 8)
        free = layer(x, w)
        layer.conv_clamp = 0.05
        clamped = layer(x, w)
    assert float(free.abs().max()) > 0.05
    torch.testing.assert_close(clamped, free.clamp(-0.05, 0.05), rtol=0, atol=1e-7)


def test_layer_rejects_bad_input_shape():
    with pytest.raises(ValueError, match=r"x must have shape \[N, 4, 12, 12\]"):
        _layer()(torch.zeros(1, 4, 11, 12), torch.zeros(1, 8))


# ----------------------------------------------------------------------------------------------------------
# Network-level rules


def _small_G(**kw) -> stylegan3.Generator:
    torch.manual_seed(0)
    args = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=64, channel_max=8,
                num_layers=4, num_critical=1, num_fp16_res=0, mapping_kwargs={"num_layers": 1})
    args.update(kw)
    return stylegan3.Generator(**args).eval().requires_grad_(False)


def test_output_scale_noise_mode_and_forward_keywords():
    G = _small_G()
    ws = torch.randn(2, G.num_ws, G.w_dim)
    img = G.synthesis(ws)
    assert img.shape == (2, 3, 16, 16) and img.dtype == torch.float32
    for mode in ("const", "none", "random"):   # accepted and ignored
        torch.testing.assert_close(G.synthesis(ws, noise_mode=mode), img, rtol=0, atol=0)
    H = _small_G(output_scale=1)
    H.load_state_dict(G.state_dict())
    torch.testing.assert_close(H.synthesis(ws) * 0.25, img, rtol=1e-6, atol=0)
    with pytest.raises(TypeError, match="fused_modconv"):
        G.synthesis(ws, fused_modconv=True)
    with pytest.raises(TypeError, match="fused_modconv"):
        G(torch.randn(1, 8), None, fused_modconv=False)
    with pytest.raises(TypeError, match="bogus"):
        G.synthesis(ws, bogus=1)
    with pytest.raises(ValueError, match="ws must have shape"):
        G.synthesis(ws[:, 1:])
    with pytest.raises(TypeError, match="architecture"):
        _small_G(architecture="skip")


def test_truncation_cutoff_routes_through_the_generator():
    G, d = golden_net("sg3_G_T"), golden_io("sg3_G_T")
    z = torch.from_numpy(d["z"][:1])
    ws = G.mapping(z, None)
    w_avg = G.mapping.w_avg
    assert float(w_avg.abs().max()) > 0
    for psi, cutoff in ((0.5, 4), (0.7, None), (-0.3, 1)):
        cut = G.num_ws if cutoff is None else cutoff
        want = ws.clone()
        want[:, :cut] = w_avg + psi * (ws[:, :cut] - w_avg)
        torch.testing.assert_close(G.mapping(z, None, truncation_psi=psi, truncation_cutoff=cutoff), want,
                                   rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(G(z, None, truncation_psi=psi, truncation_cutoff=cutoff),
                                   G.synthesis(want), rtol=1e-5, atol=1e-6)


def test_precision_scopes_on_cpu():
    G = _small_G(num_fp16_res=4)
    assert all(getattr(G.synthesis, n).use_fp16 for n in G.synthesis.layer_names[1:])
    dtypes = []
    hooks = [getattr(G.synthesis, n).register_forward_hook(lambda m, a, out: dtypes.append(out.dtype))
             for n in G.synthesis.layer_names]
    try:
        ws = torch.randn(1, G.num_ws, G.w_dim)
        assert G.synthesis(ws).dtype == torch.float32 and set(dtypes) == {torch.float32}  # fp16 is CUDA-only
        dtypes.clear()
        with fastgan.nets.precision("bf16"):
            assert G.synthesis(ws).dtype == torch.float32
            assert set(dtypes) == {torch.bfloat16}
            dtypes.clear()
            G.synthesis(ws, force_fp32=True)
            assert set(dtypes) == {torch.float32}
    finally:
        for h in hooks:
            h.remove()


# ----------------------------------------------------------------------------------------------------------
# Every G config recorded by NVlabs' stylegan3 train.py (spec 4.2), in its key order


def _train_py_kwargs(cfg: str, c_dim: int, fp32: bool, cbase: int, cmax: int, map_depth=None, batch=32) -> dict:
    kw = dict(z_dim=512, w_dim=512, mapping_kwargs={"num_layers": map_depth or 2},
              channel_base=cbase * (2 if cfg == "r" else 1), channel_max=cmax * (2 if cfg == "r" else 1),
              magnitude_ema_beta=0.5 ** (batch / 20000))
    if cfg == "r":
        kw.update(conv_kernel=1, use_radial_filters=True)
    if fp32:
        kw.update(num_fp16_res=0, conv_clamp=None)
    kw.update(c_dim=c_dim, img_resolution=32, img_channels=3)
    return kw


@pytest.mark.parametrize("fp32", [False, True], ids=["mixed", "fp32"])
@pytest.mark.parametrize("c_dim", [0, 5], ids=["c0", "c5"])
@pytest.mark.parametrize("cfg", ["t", "r"])
def test_train_py_recorded_kwargs_build_and_run(tmp_path, cfg, c_dim, fp32):
    # cbase/cmax are --cbase/--cmax: the golden nets' values, whose NVlabs layer names are known
    kw = _train_py_kwargs(cfg, c_dim, fp32, cbase=1024, cmax=64, map_depth=3 if c_dim else None)
    assert kw["magnitude_ema_beta"] == pytest.approx(0.9988915792636801, rel=1e-15)
    torch.manual_seed(1)
    G = stylegan3.Generator(**kw).eval().requires_grad_(False)
    golden = "sg3_G_T" if cfg == "t" else "sg3_G_R"
    layer_keys = [k.split(".")[1] for k in golden_network(golden)["state_dict"]
                  if k.endswith(".magnitude_ema")]
    assert G.synthesis.layer_names == layer_keys
    layers = [getattr(G.synthesis, n) for n in G.synthesis.layer_names]
    assert all(layer.magnitude_ema_beta == kw["magnitude_ema_beta"] for layer in layers)
    assert all(layer.conv_clamp == (None if fp32 else 256) for layer in layers)
    assert any(layer.use_fp16 for layer in layers) != fp32
    assert all(layer.weight.shape[-1] == (1 if cfg == "r" or layer.is_torgb else 3) for layer in layers)
    assert any(layer.down_radial for layer in layers) == (cfg == "r")
    mapping = G.mapping
    assert [n for n, _ in mapping.named_children()] == (["embed"] if c_dim else []) + \
        [f"fc{i}" for i in range(kw["mapping_kwargs"]["num_layers"])]
    assert (mapping.embed is None) == (c_dim == 0)
    assert G.init_kwargs == kw
    z = torch.randn(2, 512)
    c = torch.nn.functional.one_hot(torch.tensor([1, 3]), c_dim).float() if c_dim else None
    img = G(z, c, truncation_psi=0.7, noise_mode="const")
    assert img.shape == (2, 3, 32, 32) and img.dtype == torch.float32 and bool(img.isfinite().all())

    # the same kwargs in an NVlabs-format snapshot load through fastgan.load_network
    from nvlabs_pickle import SG3_SRC, snapshot_bytes

    path = tmp_path / "snapshot.pkl"
    path.write_bytes(snapshot_bytes(G, None, kw, module_src=SG3_SRC))
    H = fastgan.load_network(path)
    assert type(H) is stylegan3.Generator
    torch.testing.assert_close(H(z, c, truncation_psi=0.7), img, rtol=0, atol=0)
