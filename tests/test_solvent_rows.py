"""The physics solvent head's template rows, their groups, and the coefficients shared by kind
(``solvent_kind_coef``)."""
from __future__ import annotations

import pytest
import torch

from abcc_fast.data import chemistry as chem
from abcc_fast.data.templates import simulator_basis
from abcc_fast.model import ABCC, ABCCConfig
from abcc_fast.model.backbone import legendre_basis
from abcc_fast.model.solvent_rows import KINDS, STATES, KindCoefficients, solvent_templates

W = 256
WN = [700.0 + 1200.0 * i / (W - 1) for i in range(W)]
COMPONENTS = ["EC", "PC", "DMC", "EMC", "DEC", "FEC", "VC", "DME", "DOL", "LiPF6", "LiTFSI", "LiFSI", "LiBF4",
              "LiClO4", "LiNO3"]                                 # the default dataset's vocabulary


def config(**kw) -> ABCCConfig:
    base = dict(W=W, T=6, n_components=len(COMPONENTS), n_electrodes=2, n_reactions=2, wavenumber=WN,
                marker_windows={}, components=COMPONENTS, electrodes=["graphite", "Cu"], norm_mean=0.1,
                norm_std=0.2, volt_mean=1.5, volt_std=1.0, solvent_basis="physics", basis_rank=0)
    base.update(kw)
    return ABCCConfig.tiny(**base)


def test_rows_have_their_component_and_its_kind_and_state():
    cfg = config()
    tpl, owners, groups = solvent_templates(cfg)
    basis = simulator_basis(WN)
    keep = torch.as_tensor(basis.electrolyte).abs().amax(1) > 0
    index = torch.cumsum(keep.long(), 0) - 1                         # row in the kept matrix
    for s, rows in enumerate((basis.free_row, basis.bound_row)):
        for name, row in rows.items():
            if not keep[row]:
                continue
            m = int(index[row])
            if name in COMPONENTS:
                assert owners[m] == COMPONENTS.index(name)
                assert groups[m] == KINDS.index(chem.COMPONENTS[name].kind) * len(STATES) + s
            else:
                assert owners[m] == -1 and groups[m] == -1
    assert (groups[owners < 0] == -1).all() and (groups[owners >= 0] >= 0).all()
    assert tpl.abs().amax(1).sub(1).abs().max() < 1e-12             # unit peaks
    assert {int(g) // 2 for g in groups[groups >= 0]} == {0, 1, 2}   # solvents, an additive (VC), salts


def test_static_amounts_recover_a_mixture_on_the_cells_own_rows():
    """a = the least-squares amounts of the static spectrum on the rows the cell uses, fitted beside a
    smooth baseline: a known mixture plus a baseline is recovered; unusable rows get 0."""
    cfg = config()
    tpl, owners, groups = solvent_templates(cfg)
    tpl = tpl.double()
    kinds = KindCoefficients(8, groups, legendre_basis(W, 4), cfg.norm_mean, cfg.norm_std).double()
    g = torch.Generator().manual_seed(0)
    held = [COMPONENTS.index(n) for n in ("EC", "DMC", "LiPF6")]
    rows = ((owners[None] < 0) | (owners[None] == torch.tensor(held)[:, None]).any(0)).double().expand(2, -1)
    true = torch.rand(2, tpl.shape[0], generator=g, dtype=torch.float64) * 0.4 * rows
    baseline = torch.tensor([[0.02, 0.01, -0.005, 0.0], [0.05, -0.02, 0.0, 0.003]], dtype=torch.float64)
    raw = true @ tpl + baseline @ legendre_basis(W, 4).double()
    static = (raw - cfg.norm_mean) / cfg.norm_std
    a = kinds.static_amounts(static, tpl, rows)
    own = groups >= 0
    torch.testing.assert_close(a[:, own], true[:, own], atol=2e-3, rtol=0)     # the ridge's bias only
    assert (a[rows == 0] == 0).all() and (a >= 0).all()
    full = kinds.static_amounts(static, tpl, None)                    # every row may take part
    assert (full >= 0).all() and torch.isfinite(full).all()


def test_kind_fractions_move_every_component_of_the_kind_by_its_static_amount():
    """The extra amount of row m is rho_g x a_m / std: a salt fraction moves the LiBF4 rows (a salt the
    training cells may never have held) like the LiPF6 rows, in proportion to each one's amount."""
    cfg = config()
    tpl, owners, groups = solvent_templates(cfg)
    kinds = KindCoefficients(8, groups, legendre_basis(W, 4), cfg.norm_mean, cfg.norm_std).double()
    salt_free = KINDS.index("salt") * len(STATES)
    with torch.no_grad():
        kinds.coef.bias[salt_free] = 0.25
    static = torch.randn(3, W, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.1
    feats = torch.randn(3, 4, 8, dtype=torch.float64)
    extra = kinds(feats, kinds.row_amounts(static, tpl.double()))    # [B, Q, E]
    a = kinds.static_amounts(static, tpl.double())
    want = 0.25 * a / cfg.norm_std * (groups == salt_free).double()
    torch.testing.assert_close(extra, want[:, None].expand(-1, 4, -1))
    fractions = torch.rand(3, tpl.shape[0], dtype=torch.float64) * (owners >= 0)      # per_fraction
    fractions[0, 0] = 0.001                                          # below FRACTION_MIN
    per = kinds(feats, kinds.row_amounts(static, tpl.double(), None, fractions))
    scale = torch.where(fractions > 0, 1 / fractions.clamp_min(0.01), torch.zeros_like(fractions))
    torch.testing.assert_close(per, (want * scale)[:, None].expand(-1, 4, -1))
    slow = KindCoefficients(8, groups, legendre_basis(W, 4), cfg.norm_mean, cfg.norm_std, gain=0.1).double()
    slow.load_state_dict(kinds.state_dict())                         # solvent_kind_gain scales the fractions
    torch.testing.assert_close(slow(feats, slow.row_amounts(static, tpl.double())), 0.1 * extra)
    moved = {COMPONENTS[int(owners[m])] for m in torch.nonzero(groups == salt_free).reshape(-1)}
    assert moved == {"LiPF6", "LiTFSI", "LiFSI", "LiBF4", "LiClO4", "LiNO3"}


@pytest.mark.parametrize("scale", ["amount", "per_fraction"])
def test_kind_model_trains_saves_and_reloads(tmp_path, scale):
    import abcc_fast.data as data

    ds = data.load(data.generate(tmp_path / "ds", n_samples=8, T=5, W=128, seed=3, progress=False))
    cfg = ABCCConfig.from_dataset(ds, "random", preset="tiny", solvent_basis="physics", basis_rank=0,
                                  solvent_kind_coef=True, solvent_present_only=True, solvent_kind_scale=scale)
    torch.manual_seed(0)
    model = ABCC(cfg)
    batch = {k: torch.stack([torch.as_tensor(ds[i][k]) for i in range(4)]) for k in
             ("static", "frames", "voltage", "composition", "electrode", "time_s")}
    for p in model.parameters():                                      # leave the zero start
        p.data.add_(0.01 * torch.randn_like(p))
    loss, _ = model.training_loss(batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.head_solvent.kinds.coef.weight.grad.abs().sum() > 0
    path = model.save_pretrained(tmp_path / "m")
    again = ABCC.from_pretrained(path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)
    with pytest.raises(ValueError, match="solvent_kind_coef .* needs solvent_basis='physics'"):
        config(solvent_basis="free", solvent_kind_coef=True).validate()
    with pytest.raises(ValueError, match="solvent_kind_gain must be > 0"):
        config(solvent_kind_coef=True, solvent_kind_gain=0.0).validate()
    with pytest.raises(ValueError, match="solvent_kind_scale must be"):
        config(solvent_kind_coef=True, solvent_kind_scale="molar").validate()
    with pytest.raises(ValueError, match="per_fraction' reads the mole fractions"):
        config(solvent_kind_coef=True, solvent_kind_scale="per_fraction", composition_encoding="templates").validate()
