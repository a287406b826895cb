"""Triton kernels of soft-DTW and fused DILATE (plain @triton.jit functions and launch helpers).

The algorithm is the one of csrc/soft_dtw/soft_dtw.cpp (see its header for the conventions):

  * anti-diagonal wavefront; one program owns PAIRS pairs and walks the diagonals of all of them
    together as a 2-D block [PAIRS, BLOCK_I] (BLOCK_I rows of a diagonal at a time; longer
    diagonals are walked in chunks, so any N works);
  * Triton has no register shuffles: the two previous diagonals travel through a small global
    scratch (3 rotating diagonals per pair), with `tl.debug_barrier()` between steps;
  * precision: diagonal k is stored relative to a per-pair float64 base
    b_k = b_{k-1} + min(stored diagonal k-1), i.e. relative to the minimum of the previous
    diagonal. Storing relative to the previous minimum (instead of the CPU's own minimum) needs
    no second pass over a chunked diagonal; every exponent is still formed from O(local spread)
    numbers. The backward reads the bases it was given, so both conventions are exact;
  * DILATE: the temporal term is the forward-mode tangent of R in direction Omega, carried in the
    same sweep; the backward carries E and its tangent (H.Omega) in one reverse sweep;
  * forward with `save`: relative R (and its tangent) in cell layout [B, N, M] plus the bases
    [B, N+M-1] (float64); the backward forms E from them and writes G = gv E + gt E' on the grid.

Semantics equal the CPU backend: cells outside the lengths or the band are dead (value BIG,
alignment 0, gradient exactly 0). Loads of the scratch use cache modifier ".cg" (L2, coherent for
the whole CTA after the barrier); launches use num_stages=1 so no load is hoisted across a barrier.
"""
from __future__ import annotations


import torch
import triton
import triton.language as tl

from . import on_device

_BIG = 1e30  # "infinity" that stays finite under + and - (as the CPU kernels)
BIG = tl.constexpr(_BIG)  # globals read inside @triton.jit functions must be constexpr
HALF_BIG = tl.constexpr(_BIG / 2)
LOG2E = 1.4426950408889634


@triton.jit
def _cell_cost(D_ptr, x_ptr, y_ptr, b64, i, j, N, M, mask, SEQ: tl.constexpr):
    """Cost of cells (i, j) of pairs b64: D[b, i, j] or (x[b, i] - y[b, j])^2. [P, BI]"""
    if SEQ:
        xv = tl.load(x_ptr + b64 * N + i, mask=mask, other=0.0)
        yv = tl.load(y_ptr + b64 * M + j, mask=mask, other=0.0)
        d = xv - yv
        c = d * d
    else:
        c = tl.load(D_ptr + (b64 * N + i) * M + j, mask=mask, other=0.0)
    return c


@triton.jit
def _cell_omega(om_ptr, om_bstride, b64, i, j, n, m, M, mask, OMEGA: tl.constexpr):
    """DILATE tangent direction: Omega[b, i, j], default ((i+1)/n - (j+1)/m)^2. [P, BI]"""
    if OMEGA:
        o = tl.load(om_ptr + b64 * om_bstride + i.to(tl.int64) * M + j, mask=mask, other=0.0)
    else:
        inv_n = 1.0 / n.to(tl.float32)
        inv_m = 1.0 / m.to(tl.float32)
        d = (i + 1).to(tl.float32) * inv_n - (j + 1).to(tl.float32) * inv_m
        o = d * d
    return o


@triton.jit
def _cell_valid(i, j, n, m, w, N, M, pmask, BAND: tl.constexpr):
    """In the grid, inside the lengths and the Sakoe-Chiba band |i (m-1) - j (n-1)| <= w (float64)."""
    valid = (i < n) & (j >= 0) & (j < m) & pmask
    if BAND:
        dev = (i * (m - 1) - j * (n - 1)).to(tl.float64)
        valid = valid & (tl.abs(dev) <= w)
    return valid


@triton.jit
def sdtw_fwd_kernel(D_ptr, x_ptr, y_ptr, n_ptr, m_ptr, om_ptr, om_bstride,
                    value_ptr, temporal_ptr, scr_ptr, tscr_ptr, r_ptr, rt_ptr, base_ptr,
                    B, N, M, K, s, inv_s, bw_ptr,
                    SEQ: tl.constexpr, TANG: tl.constexpr, OMEGA: tl.constexpr, SAVE: tl.constexpr,
                    BAND: tl.constexpr, PAIRS: tl.constexpr, BLOCK_I: tl.constexpr):
    """Forward wavefront. scr/tscr: [B, 3, N] rotating diagonals (filled with BIG / 0 by the caller)."""
    pid = tl.program_id(0)
    pb = pid * PAIRS + tl.arange(0, PAIRS)                 # [P]
    pmask1 = pb < B
    n1 = tl.load(n_ptr + pb, mask=pmask1, other=1).to(tl.int32)
    m1 = tl.load(m_ptr + pb, mask=pmask1, other=1).to(tl.int32)
    b64 = pb.to(tl.int64)[:, None]                          # [P, 1]
    pmask = pmask1[:, None]
    n = n1[:, None]
    m = m1[:, None]
    # band threshold in float64, as the CPU (a float scalar argument would be rounded to float32)
    w = tl.load(bw_ptr).to(tl.float64) * tl.maximum(n - 1, m - 1).to(tl.float64)
    last_k = n1 + m1 - 2                                     # [P]
    rows = tl.arange(0, BLOCK_I)[None, :]                    # [1, BI]

    base_m1 = tl.zeros([PAIRS], dtype=tl.float64)            # b_{k-1}
    base_m2 = tl.zeros([PAIRS], dtype=tl.float64)            # b_{k-2}
    rmin_prev = tl.zeros([PAIRS], dtype=tl.float32)          # min of stored diagonal k-1
    value = tl.zeros([PAIRS], dtype=tl.float64)
    temporal = tl.zeros([PAIRS], dtype=tl.float32)
    k = 0
    while k < K:
        base_k = base_m1 + rmin_prev.to(tl.float64)
        sh1 = (base_k - base_m1).to(tl.float32)[:, None]     # diagonal k-1: stored - sh1 = relative to b_k
        c2 = (base_m2 - base_k).to(tl.float32)[:, None]      # diagonal k-2: stored + c2
        cur = k % 3
        p1 = (k + 2) % 3
        p2 = (k + 1) % 3
        rmin_acc = tl.full([PAIRS], BIG, tl.float32)
        last_v = tl.zeros([PAIRS], dtype=tl.float32)
        last_t = tl.zeros([PAIRS], dtype=tl.float32)
        c0 = 0
        while c0 < N:
            i = c0 + rows                                    # [1, BI]
            j = k - i
            in_rows = (i < N) & pmask
            valid = _cell_valid(i, j, n, m, w, N, M, pmask, BAND)
            up = (i >= 1) & in_rows
            a = tl.load(scr_ptr + (b64 * 3 + p2) * N + (i - 1), mask=up, other=BIG,
                        cache_modifier=".cg") + c2
            a = tl.where((i == 0) & (k == 0), 0.0, a)       # R_{-1,-1} = 0
            bb = tl.load(scr_ptr + (b64 * 3 + p1) * N + (i - 1), mask=up, other=BIG,
                         cache_modifier=".cg") - sh1
            cc = tl.load(scr_ptr + (b64 * 3 + p1) * N + i, mask=in_rows, other=BIG,
                         cache_modifier=".cg") - sh1
            mn = tl.minimum(a, tl.minimum(bb, cc))
            ea = tl.exp2((mn - a) * s)
            eb = tl.exp2((mn - bb) * s)
            ec = tl.exp2((mn - cc) * s)
            S = ea + eb + ec
            alive = valid & (mn < HALF_BIG)
            cost = _cell_cost(D_ptr, x_ptr, y_ptr, b64, i, j, N, M, valid, SEQ)
            v = tl.where(alive, cost + (mn - tl.log2(S) * inv_s), BIG)
            tl.store(scr_ptr + (b64 * 3 + cur) * N + i, v, mask=in_rows)
            ingrid = in_rows & (j >= 0) & (j < M)
            if SAVE:
                tl.store(r_ptr + (b64 * N + i) * M + j, v, mask=ingrid)
            is_last = valid & (i == n - 1) & (j == m - 1)
            last_v += tl.sum(tl.where(is_last, v, 0.0), axis=1)
            rmin_acc = tl.minimum(rmin_acc, tl.min(tl.where(alive, v, BIG), axis=1))
            if TANG:
                ta = tl.load(tscr_ptr + (b64 * 3 + p2) * N + (i - 1), mask=up, other=0.0,
                             cache_modifier=".cg")
                tb = tl.load(tscr_ptr + (b64 * 3 + p1) * N + (i - 1), mask=up, other=0.0,
                             cache_modifier=".cg")
                tc = tl.load(tscr_ptr + (b64 * 3 + p1) * N + i, mask=in_rows, other=0.0,
                             cache_modifier=".cg")
                om = _cell_omega(om_ptr, om_bstride, b64, i, j, n, m, M, valid, OMEGA)
                tv = tl.where(alive, om + (ea * ta + eb * tb + ec * tc) / S, 0.0)
                tl.store(tscr_ptr + (b64 * 3 + cur) * N + i, tv, mask=in_rows)
                if SAVE:
                    tl.store(rt_ptr + (b64 * N + i) * M + j, tv, mask=ingrid)
                last_t += tl.sum(tl.where(is_last, tv, 0.0), axis=1)
            c0 += BLOCK_I
        tl.debug_barrier()
        hit = last_k == k
        value = tl.where(hit, base_k + last_v.to(tl.float64), value)
        temporal = tl.where(hit, last_t, temporal)
        if SAVE:
            tl.store(base_ptr + pb.to(tl.int64) * K + k, base_k, mask=pmask1)
        rmin_prev = tl.where(rmin_acc >= HALF_BIG, 0.0, rmin_acc)
        base_m2 = base_m1
        base_m1 = base_k
        k += 1
    tl.store(value_ptr + pb, value.to(value_ptr.dtype.element_ty), mask=pmask1)
    if TANG:
        tl.store(temporal_ptr + pb, temporal.to(temporal_ptr.dtype.element_ty), mask=pmask1)


@triton.jit
def sdtw_bwd_kernel(D_ptr, x_ptr, y_ptr, n_ptr, m_ptr, om_ptr, om_bstride,
                    r_ptr, rt_ptr, base_ptr, gv_ptr, gt_ptr, G_ptr,
                    pa_ptr, pb_ptr, pc_ptr, pta_ptr, ptb_ptr, ptc_ptr,
                    B, N, M, K, s, inv_g, bw_ptr,
                    TANG: tl.constexpr, OMEGA: tl.constexpr,
                    BAND: tl.constexpr, PAIRS: tl.constexpr, BLOCK_I: tl.constexpr):
    """Reverse wavefront in push form: E (and E' for DILATE) from the saved relative R; writes G.

    Each cell recomputes its three soft-argmin weights P_a, P_b, P_c from exactly the stored values
    (and bases) its forward step used, so they sum to 1 in float32 and E does not drift along long
    paths (forming them from r_s - cost_s - r_p instead loses eps |cost| / gamma per step). The
    products it sends to its predecessors (i-1, j-1), (i-1, j), (i, j-1),
        pa = E P_a, pb = E P_b, pc = E P_c          (DILATE: pt_x = P_x (E' + E (Q'_s - t_x) / g)),
    go to pa/pb/pc (pta/ptb/ptc): [B, 3, N] rotating diagonals, zero-filled by the caller, and a
    cell pulls E_p = pb_{k+1}[i+1] + pc_{k+1}[i] + pa_{k+2}[i+1].
    """
    pid = tl.program_id(0)
    pbat = pid * PAIRS + tl.arange(0, PAIRS)
    pmask1 = pbat < B
    n1 = tl.load(n_ptr + pbat, mask=pmask1, other=1).to(tl.int32)
    m1 = tl.load(m_ptr + pbat, mask=pmask1, other=1).to(tl.int32)
    b64 = pbat.to(tl.int64)[:, None]
    pmask = pmask1[:, None]
    n = n1[:, None]
    m = m1[:, None]
    # band threshold in float64, as the CPU (a float scalar argument would be rounded to float32)
    w = tl.load(bw_ptr).to(tl.float64) * tl.maximum(n - 1, m - 1).to(tl.float64)
    rows = tl.arange(0, BLOCK_I)[None, :]
    gv = tl.load(gv_ptr + pbat, mask=pmask1, other=0.0).to(tl.float32)[:, None]
    if TANG:
        gt = tl.load(gt_ptr + pbat, mask=pmask1, other=0.0).to(tl.float32)[:, None]
    pb64 = pbat.to(tl.int64)
    k = K - 1
    while k >= 0:
        base_k = tl.load(base_ptr + pb64 * K + k, mask=pmask1, other=0.0)
        base_m1 = tl.load(base_ptr + pb64 * K + (k - 1), mask=pmask1 & (k >= 1), other=0.0)
        base_m2 = tl.load(base_ptr + pb64 * K + (k - 2), mask=pmask1 & (k >= 2), other=0.0)
        sh1 = (base_k - base_m1).to(tl.float32)[:, None]  # as in the forward, bit for bit
        c2 = (base_m2 - base_k).to(tl.float32)[:, None]
        cur = k % 3
        s1 = (k + 1) % 3
        s2 = (k + 2) % 3
        c0 = 0
        while c0 < N:
            i = c0 + rows
            j = k - i
            in_rows = (i < N) & pmask
            valid = _cell_valid(i, j, n, m, w, N, M, pmask, BAND)
            ingrid = in_rows & (j >= 0) & (j < M)
            down = (i + 1 < N) & pmask
            # pull what the successors pushed
            e = (tl.load(pb_ptr + (b64 * 3 + s1) * N + (i + 1), mask=down, other=0.0, cache_modifier=".cg")
                 + tl.load(pc_ptr + (b64 * 3 + s1) * N + i, mask=in_rows, other=0.0, cache_modifier=".cg")
                 + tl.load(pa_ptr + (b64 * 3 + s2) * N + (i + 1), mask=down, other=0.0, cache_modifier=".cg"))
            terminal = (i == n - 1) & (j == m - 1)
            e = tl.where(terminal, 1.0, e)
            e = tl.where(valid, e, 0.0)
            # this cell's soft-argmin weights, from the stored predecessors (BIG outside the grid)
            up = valid & (i >= 1)
            left = valid & (j >= 1)
            a = tl.load(r_ptr + (b64 * N + (i - 1)) * M + (j - 1), mask=up & left, other=BIG) + c2
            a = tl.where((i == 0) & (k == 0), 0.0, a)       # R_{-1,-1} = 0
            bb = tl.load(r_ptr + (b64 * N + (i - 1)) * M + j, mask=up, other=BIG) - sh1
            cc = tl.load(r_ptr + (b64 * N + i) * M + (j - 1), mask=left, other=BIG) - sh1
            mn = tl.minimum(a, tl.minimum(bb, cc))
            ea = tl.exp2((mn - a) * s)
            eb = tl.exp2((mn - bb) * s)
            ec = tl.exp2((mn - cc) * s)
            inv_S = tl.where(valid & (mn < HALF_BIG), 1.0 / (ea + eb + ec), 0.0)
            wa = ea * inv_S
            wb = eb * inv_S
            wc = ec * inv_S
            tl.store(pa_ptr + (b64 * 3 + cur) * N + i, e * wa, mask=in_rows)
            tl.store(pb_ptr + (b64 * 3 + cur) * N + i, e * wb, mask=in_rows)
            tl.store(pc_ptr + (b64 * 3 + cur) * N + i, e * wc, mask=in_rows)
            grad = gv * e
            if TANG:
                et = (tl.load(ptb_ptr + (b64 * 3 + s1) * N + (i + 1), mask=down, other=0.0, cache_modifier=".cg")
                      + tl.load(ptc_ptr + (b64 * 3 + s1) * N + i, mask=in_rows, other=0.0, cache_modifier=".cg")
                      + tl.load(pta_ptr + (b64 * 3 + s2) * N + (i + 1), mask=down, other=0.0,
                                cache_modifier=".cg"))
                et = tl.where(valid & (~terminal), et, 0.0)
                tp = tl.load(rt_ptr + (b64 * N + i) * M + j, mask=valid, other=0.0)
                ta = tl.load(rt_ptr + (b64 * N + (i - 1)) * M + (j - 1), mask=up & left, other=0.0)
                tb = tl.load(rt_ptr + (b64 * N + (i - 1)) * M + j, mask=up, other=0.0)
                tc = tl.load(rt_ptr + (b64 * N + i) * M + (j - 1), mask=left, other=0.0)
                om = _cell_omega(om_ptr, om_bstride, b64, i, j, n, m, M, valid, OMEGA)
                qt = tp - om                                  # tangent of the softmin at this cell
                # d/dOmega of P_x = P_x (Q'_s - t_x) / g
                tl.store(pta_ptr + (b64 * 3 + cur) * N + i, wa * (et + e * (qt - ta) * inv_g), mask=in_rows)
                tl.store(ptb_ptr + (b64 * 3 + cur) * N + i, wb * (et + e * (qt - tb) * inv_g), mask=in_rows)
                tl.store(ptc_ptr + (b64 * 3 + cur) * N + i, wc * (et + e * (qt - tc) * inv_g), mask=in_rows)
                grad += gt * et
            tl.store(G_ptr + (b64 * N + i) * M + j, grad.to(G_ptr.dtype.element_ty), mask=ingrid)
            c0 += BLOCK_I
        tl.debug_barrier()
        k -= 1


# ---------------------------------------------------------------------------------------------
# launch helpers (tensors in, tensors out; no validation beyond what the kernels assume)
# ---------------------------------------------------------------------------------------------
def _block_rows(N: int) -> int:
    return max(16, min(triton.next_power_of_2(N), 1024))


def _pairs_per_program(N: int, B: int) -> int:
    # several short pairs per program (latency-bound regime), one long pair per program
    if N <= 64:
        return min(8, triton.next_power_of_2(max(B, 1)))
    if N <= 256:
        return min(2, triton.next_power_of_2(max(B, 1)))
    return 1


def _num_warps(pairs: int, block: int) -> int:
    return max(1, min(8, pairs * block // 128))


def sdtw_forward(D, x, y, n, m, gamma: float, bandwidth: float, omega, want_temporal: bool, save: bool):
    """Forward launch. D [B, N, M] fp32 (or None with x [B, N], y [B, M] fp32); n, m int64 [B].

    Returns (value [B], temporal [B] or None, (r, rt, base)) where, with save, r/rt are the relative
    R and its tangent [B, N, M] and base [B, N+M-1] float64; without save they are None.
    """
    seq = D is None
    ref = x if seq else D
    B = ref.shape[0]
    N = x.shape[1] if seq else D.shape[1]
    M = y.shape[1] if seq else D.shape[2]
    K = N + M - 1
    dev, dt = ref.device, ref.dtype
    value = torch.empty(B, dtype=dt, device=dev)
    temporal = torch.zeros(B, dtype=dt, device=dev) if want_temporal else value
    scr = torch.full((B, 3, N), _BIG, dtype=torch.float32, device=dev)
    tscr = torch.zeros((B, 3, N), dtype=torch.float32, device=dev) if want_temporal else scr
    if save:
        r = torch.empty((B, N, M), dtype=torch.float32, device=dev)
        rt = torch.empty((B, N, M), dtype=torch.float32, device=dev) if want_temporal else r
        base = torch.empty((B, K), dtype=torch.float64, device=dev)
    else:
        r = rt = scr
        base = torch.empty(1, dtype=torch.float64, device=dev)
    dummy = ref
    om = omega if omega is not None else dummy
    om_bstride = N * M if (omega is not None and omega.shape[0] == B and B > 1) else 0
    pairs = _pairs_per_program(N, B)
    block = _block_rows(N)
    grid = (triton.cdiv(B, pairs),)
    bw_t = torch.full((1,), float(bandwidth), dtype=torch.float64, device=dev)  # band threshold in float64
    with on_device(ref):
        sdtw_fwd_kernel[grid](
            dummy if seq else D, x if seq else dummy, y if seq else dummy, n, m, om, om_bstride,
            value, temporal, scr, tscr, r, rt, base,
            B, N, M, K, LOG2E / gamma, gamma / LOG2E, bw_t,
            SEQ=seq, TANG=bool(want_temporal), OMEGA=omega is not None, SAVE=bool(save),
            BAND=bandwidth >= 0, PAIRS=pairs, BLOCK_I=block,
            num_warps=_num_warps(pairs, block), num_stages=1)
    state = (r, rt if want_temporal else None, base) if save else None
    return value, (temporal if want_temporal else None), state


def sdtw_backward(D, x, y, n, m, gamma: float, bandwidth: float, omega, want_temporal: bool, state,
                  grad_value, grad_temporal):
    """Backward launch: G = grad_value E + grad_temporal E' [B, N, M] (zero off the valid cells)."""
    r, rt, base = state
    seq = D is None
    ref = x if seq else D
    B = ref.shape[0]
    N = x.shape[1] if seq else D.shape[1]
    M = y.shape[1] if seq else D.shape[2]
    K = N + M - 1
    dev = ref.device
    tang = bool(want_temporal) and rt is not None and grad_temporal is not None
    G = torch.empty((B, N, M), dtype=ref.dtype, device=dev)
    push = [torch.zeros((B, 3, N), dtype=torch.float32, device=dev) for _ in range(6 if tang else 3)]
    pa, pb, pc = push[:3]
    pta, ptb, ptc = push[3:] if tang else push[:3]
    dummy = ref
    om = omega if omega is not None else dummy
    om_bstride = N * M if (omega is not None and omega.shape[0] == B and B > 1) else 0
    gv = grad_value.to(torch.float32).contiguous()
    gt = grad_temporal.to(torch.float32).contiguous() if tang else gv
    pairs = _pairs_per_program(N, B)
    block = _block_rows(N)
    grid = (triton.cdiv(B, pairs),)
    bw_t = torch.full((1,), float(bandwidth), dtype=torch.float64, device=dev)  # band threshold in float64
    with on_device(ref):
        sdtw_bwd_kernel[grid](
            dummy if seq else D, x if seq else dummy, y if seq else dummy, n, m, om, om_bstride,
            r, rt if tang else r, base, gv, gt, G, pa, pb, pc, pta, ptb, ptc,
            B, N, M, K, LOG2E / gamma, 1.0 / gamma, bw_t,
            TANG=tang, OMEGA=omega is not None, BAND=bandwidth >= 0,
            PAIRS=pairs, BLOCK_I=block, num_warps=_num_warps(pairs, block), num_stages=1)
    return G
