//! Splitting a product's rows or columns over scoped threads, each output
//! element owned by exactly one thread.

/// Split `0..n` into at most `parts` contiguous ranges of roughly equal
/// `cost`, where `prefix[i]` is the cumulative cost of items `0..i`.
pub(super) fn balanced_bounds(prefix: &[usize], parts: usize) -> Vec<usize> {
    let n = prefix.len() - 1;
    let parts = parts.max(1).min(n.max(1));
    let total = prefix[n];
    let mut bounds = vec![0usize];
    for t in 1..parts {
        let target = total / parts * t + (total % parts) * t / parts;
        let pos = prefix.partition_point(|&c| c < target).min(n);
        let last = *bounds.last().unwrap_or(&0);
        bounds.push(pos.max(last));
    }
    bounds.push(n);
    bounds
}

/// Run `f(start, end, out_chunk, vals_chunk)` over item ranges given by
/// `bounds`, where item `i` owns `out[i*k..(i+1)*k]` and `vals[i]`; ranges
/// run on scoped threads.
pub(super) fn par_ranges<T, F>(bounds: &[usize], k: usize, out: &mut [f64], vals: &mut [T], f: F)
where
    T: Send,
    F: Fn(usize, usize, &mut [f64], &mut [T]) + Sync,
{
    if bounds.len() <= 2 {
        f(bounds[0], bounds[bounds.len() - 1], out, vals);
        return;
    }
    std::thread::scope(|s| {
        let (mut rest, mut vrest) = (out, vals);
        for w in bounds.windows(2) {
            let (a, b) = (w[0], w[1]);
            let (chunk, tail) = rest.split_at_mut((b - a) * k);
            let (vchunk, vtail) = vrest.split_at_mut(b - a);
            rest = tail;
            vrest = vtail;
            let f = &f;
            s.spawn(move || f(a, b, chunk, vchunk));
        }
    });
}
