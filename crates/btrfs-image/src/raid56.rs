//! RAID5/RAID6 rebuild of data stripes (fs/btrfs/raid56.c's `recover_vertical()`, with
//! lib/raid6's arithmetic): P is the XOR of a row's data units; Q is `sum(g^i * D_i)` in GF(2^8)
//! with the generator `g = 2` and the polynomial `x^8 + x^4 + x^3 + x^2 + 1` (0x11d), data units
//! numbered in logical order (`raid6_gen_syndrome()`). One unknown data unit comes back from P,
//! or from Q when P is unknown too (`raid6_datap_recov()`); two from P and Q
//! (`raid6_2data_recov()`).

/// `exp[i] = g^i`, `log[g^i] = i` (i < 255), built once.
struct Tables {
    exp: [u8; 512],
    log: [u8; 256],
}

static TABLES: std::sync::OnceLock<Tables> = std::sync::OnceLock::new();

fn tables() -> &'static Tables {
    TABLES.get_or_init(|| {
        let mut t = Tables { exp: [0; 512], log: [0; 256] };
        let mut x: u8 = 1;
        for i in 0..255u8 {
            let k = usize::from(i);
            t.exp[k] = x;
            t.exp[k + 255] = x;
            t.log[usize::from(x)] = i;
            // x * g: shift, and reduce by the polynomial when bit 8 would be set.
            x = (x << 1) ^ if x & 0x80 != 0 { 0x1d } else { 0 };
        }
        t
    })
}

/// `a * b` in GF(2^8).
pub fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    let t = tables();
    t.exp[usize::from(t.log[usize::from(a)]) + usize::from(t.log[usize::from(b)])]
}

/// `g^i`.
pub fn gpow(i: usize) -> u8 {
    tables().exp[i % 255]
}

/// `a / b` in GF(2^8) (`b` not zero).
fn div(a: u8, b: u8) -> u8 {
    if a == 0 {
        return 0;
    }
    let t = tables();
    let (la, lb) = (usize::from(t.log[usize::from(a)]), usize::from(t.log[usize::from(b)]));
    t.exp[(la + 255 - lb) % 255]
}

/// P and Q of the data units (each the same length).
pub fn syndrome(data: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
    let n = data.first().map_or(0, |d| d.len());
    let mut p = vec![0u8; n];
    let mut q = vec![0u8; n];
    for (i, d) in data.iter().enumerate() {
        let g = gpow(i);
        for j in 0..n {
            p[j] ^= d[j];
            q[j] ^= mul(g, d[j]);
        }
    }
    (p, q)
}

/// A row's units as far as they are known: `data[i]` for each data unit, P, Q (None for RAID5,
/// or unknown).
pub struct Row<'a> {
    /// Data units in logical order; `None` where unknown.
    pub data: Vec<Option<&'a [u8]>>,
    /// P, if known.
    pub p: Option<&'a [u8]>,
    /// Q, if known (RAID6).
    pub q: Option<&'a [u8]>,
}

/// Rebuild data unit `want` of `row` into `out` (its length). `None` when the row lacks what it
/// takes: more units unknown than parities known.
pub fn rebuild(row: &Row<'_>, want: usize, out: &mut [u8]) -> Option<()> {
    let n = out.len();
    let unknown: Vec<usize> = (0..row.data.len()).filter(|&i| row.data[i].is_none() || i == want).collect();
    let known = |i: usize| row.data[i].filter(|_| i != want);
    match (unknown.as_slice(), row.p, row.q) {
        ([x], Some(p), _) if *x == want => {
            out.copy_from_slice(&p[..n]);
            for i in (0..row.data.len()).filter(|&i| i != want) {
                let d = known(i)?;
                out.iter_mut().zip(d).for_each(|(o, b)| *o ^= b);
            }
            Some(())
        }
        ([x], None, Some(q)) if *x == want => {
            // D_x = (Q + sum_{i != x} g^i D_i) / g^x
            out.copy_from_slice(&q[..n]);
            for i in (0..row.data.len()).filter(|&i| i != want) {
                let (d, g) = (known(i)?, gpow(i));
                out.iter_mut().zip(d).for_each(|(o, &b)| *o ^= mul(g, b));
            }
            let gx = gpow(want);
            out.iter_mut().for_each(|o| *o = div(*o, gx));
            Some(())
        }
        ([x, y], Some(p), Some(q)) if *x == want || *y == want => {
            let (x, y) = (*x, *y);
            let (gx, gy) = (gpow(x), gpow(y));
            let denom = gx ^ gy;
            for j in 0..n {
                let (mut pxy, mut qxy) = (p[j], q[j]);
                for i in (0..row.data.len()).filter(|&i| i != x && i != y) {
                    let b = row.data[i]?[j];
                    pxy ^= b;
                    qxy ^= mul(gpow(i), b);
                }
                // D_x = (g^y * Pxy + Qxy) / (g^x + g^y); D_y = Pxy + D_x.
                let dx = div(mul(gy, pxy) ^ qxy, denom);
                out[j] = if want == x { dx } else { pxy ^ dx };
            }
            Some(())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units() -> Vec<Vec<u8>> {
        (0..4u8).map(|i| (0..64u8).map(|j| j.wrapping_mul(31).wrapping_add(i * 7) ^ (i << 5)).collect()).collect()
    }

    #[test]
    fn the_field_is_the_kernels() {
        // lib/raid6's tables: g^8 = 0x1d, g^255 = 1; every non-zero element has an inverse.
        assert_eq!(gpow(8), 0x1d);
        assert_eq!(gpow(255), 1);
        for a in 1..=255u8 {
            assert_eq!(mul(a, div(1, a)), 1);
        }
    }

    #[test]
    fn one_or_two_units_come_back() {
        let d = units();
        let refs: Vec<&[u8]> = d.iter().map(|v| &v[..]).collect();
        let (p, q) = syndrome(&refs);
        for x in 0..4 {
            // From P, from Q without P, and with a second unit lost.
            let mut out = vec![0u8; 64];
            let mut data: Vec<Option<&[u8]>> = refs.iter().map(|r| Some(*r)).collect();
            data[x] = None;
            rebuild(&Row { data: data.clone(), p: Some(&p), q: None }, x, &mut out).unwrap();
            assert_eq!(out, d[x]);
            rebuild(&Row { data: data.clone(), p: None, q: Some(&q) }, x, &mut out).unwrap();
            assert_eq!(out, d[x]);
            for y in (0..4).filter(|&y| y != x) {
                let mut two = data.clone();
                two[y] = None;
                rebuild(&Row { data: two.clone(), p: Some(&p), q: Some(&q) }, x, &mut out).unwrap();
                assert_eq!(out, d[x], "{x} {y}");
                assert!(rebuild(&Row { data: two, p: Some(&p), q: None }, x, &mut out).is_none());
            }
        }
    }
}
