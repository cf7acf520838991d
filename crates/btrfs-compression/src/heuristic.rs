//! The compress heuristic (models `btrfs_compress_heuristic()` and its helpers in
//! compression.c), with the kernel's constants.

use highmem::{FolioVec, Frame};

use crate::{Result, BTRFS_MAX_UNCOMPRESSED};

/// `SAMPLING_READ_SIZE`: bytes copied per sample.
pub const SAMPLING_READ_SIZE: usize = 16;
/// `SAMPLING_INTERVAL`: distance between samples.
pub const SAMPLING_INTERVAL: usize = 256;
/// `MAX_SAMPLE_SIZE`.
pub const MAX_SAMPLE_SIZE: usize = BTRFS_MAX_UNCOMPRESSED * SAMPLING_READ_SIZE / SAMPLING_INTERVAL;
/// `BYTE_SET_THRESHOLD`.
pub const BYTE_SET_THRESHOLD: usize = 64;
/// `BYTE_CORE_SET_LOW`.
pub const BYTE_CORE_SET_LOW: usize = 64;
/// `BYTE_CORE_SET_HIGH`.
pub const BYTE_CORE_SET_HIGH: usize = 200;
/// `ENTROPY_LVL_ACEPTABLE` (sic).
pub const ENTROPY_LVL_ACEPTABLE: u32 = 65;
/// `ENTROPY_LVL_HIGH`.
pub const ENTROPY_LVL_HIGH: u32 = 80;

/// Which rule decided (the kernel's return values 0..5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 0: do not compress (core set too large or entropy too high).
    DontCompress,
    /// 1: the first half of the sample repeats in the second half.
    RepeatedPattern,
    /// 2: fewer than 64 distinct byte values.
    SmallByteSet,
    /// 3: 64 values or fewer cover 90 % of the sample.
    SmallCoreSet,
    /// 4: entropy at most 65 %.
    LowEntropy,
    /// 5: entropy below 80 %.
    MediumEntropy,
}

impl Verdict {
    /// The kernel's return value.
    pub fn code(self) -> u8 {
        match self {
            Verdict::DontCompress => 0,
            Verdict::RepeatedPattern => 1,
            Verdict::SmallByteSet => 2,
            Verdict::SmallCoreSet => 3,
            Verdict::LowEntropy => 4,
            Verdict::MediumEntropy => 5,
        }
    }

    /// True when the kernel would go on to compress.
    pub fn compress(self) -> bool {
        self != Verdict::DontCompress
    }
}

/// Models `heuristic_collect_sample()`: 16 bytes every 256 from each page of
/// `[start, end)` (at most 128 KiB), each page mapped with the context's strategy.
pub fn collect_sample(frame: &mut Frame<'_>, pages: &FolioVec, start: usize, end: usize) -> Result<Vec<u8>> {
    let end = end.min(start + BTRFS_MAX_UNCOMPRESSED).min(pages.len());
    let ps = frame.ctx().mem().page_size();
    let mut sample = Vec::with_capacity(MAX_SAMPLE_SIZE);
    let mut index = start / ps;
    let mut index_end = end / ps;
    if end % ps != 0 {
        index_end += 1;
    }
    let mut pos = start;
    while index < index_end {
        let page_off = index * ps;
        let m = frame.map(pages, page_off, ps)?;
        // A strategy may map less than a page only at the end of the pages.
        let data: &[u8] = &m;
        let mut i = pos % ps;
        while i < ps - SAMPLING_READ_SIZE {
            // Don't sample garbage past the end (unsigned arithmetic as in C).
            if pos > end.wrapping_sub(SAMPLING_READ_SIZE) {
                break;
            }
            if i + SAMPLING_READ_SIZE <= data.len() {
                sample.extend_from_slice(&data[i..i + SAMPLING_READ_SIZE]);
            } else {
                sample.extend(std::iter::repeat_n(0, SAMPLING_READ_SIZE));
            }
            i += SAMPLING_INTERVAL;
            pos += SAMPLING_INTERVAL;
        }
        drop(m);
        index += 1;
    }
    Ok(sample)
}

/// Models `ilog2_w()`: `ilog2(n^4)`, the kernel's integer stand-in for a finer log.
fn ilog2_w(n: u64) -> u32 {
    let p = n * n * n * n;
    if p == 0 {
        0
    } else {
        63 - p.leading_zeros()
    }
}

/// The verdict for a collected sample (the decision part of `btrfs_compress_heuristic()`).
pub fn verdict_for_sample(sample: &[u8]) -> Verdict {
    let size = sample.len();
    let half = size / 2;
    if sample[..half] == sample[half..2 * half] {
        return Verdict::RepeatedPattern;
    }
    let mut bucket = [0u32; 256];
    for &b in sample {
        bucket[b as usize] += 1;
    }
    let distinct = bucket.iter().filter(|&&c| c > 0).count();
    if distinct < BYTE_SET_THRESHOLD {
        return Verdict::SmallByteSet;
    }
    // byte_core_set_size(): sort descending, count buckets until 90 % is covered.
    bucket.sort_unstable_by(|a, b| b.cmp(a));
    let threshold = size * 90 / 100;
    let mut sum: usize = bucket[..BYTE_CORE_SET_LOW].iter().map(|&c| c as usize).sum();
    let core = if sum > threshold {
        BYTE_CORE_SET_LOW
    } else {
        let mut i = BYTE_CORE_SET_LOW;
        while i < BYTE_CORE_SET_HIGH && bucket[i] > 0 {
            sum += bucket[i] as usize;
            if sum > threshold {
                break;
            }
            i += 1;
        }
        i
    };
    if core <= BYTE_CORE_SET_LOW {
        return Verdict::SmallCoreSet;
    }
    if core >= BYTE_CORE_SET_HIGH {
        return Verdict::DontCompress;
    }
    // shannon_entropy(), as a percentage of 8 bits per byte.
    let entropy_max = 8 * ilog2_w(2);
    let sz_base = ilog2_w(size as u64);
    let mut sum: u64 = 0;
    for &c in bucket.iter().take_while(|&&c| c > 0) {
        sum += u64::from(c) * u64::from(sz_base - ilog2_w(u64::from(c)));
    }
    let entropy = (sum / size as u64) as u32 * 100 / entropy_max;
    if entropy <= ENTROPY_LVL_ACEPTABLE {
        Verdict::LowEntropy
    } else if entropy < ENTROPY_LVL_HIGH {
        Verdict::MediumEntropy
    } else {
        Verdict::DontCompress
    }
}

/// Models `btrfs_compress_heuristic()` over bytes `[start, end)` of `pages`.
pub fn btrfs_compress_heuristic(frame: &mut Frame<'_>, pages: &FolioVec, start: usize, end: usize) -> Result<Verdict> {
    let sample = collect_sample(frame, pages, start, end)?;
    Ok(verdict_for_sample(&sample))
}

/// `btrfs_compress_heuristic()` of `data` read straight from a file at a page boundary, with
/// 4 KiB pages: the sample [`collect_sample`] takes (16 bytes every 256 up to the last that ends
/// by `data`'s end, at most 128 KiB; under 16 bytes, the unsigned end test lets the whole first
/// page be sampled, zeros past the data as in the page cache), without mapping pages.
pub fn verdict_of_bytes(data: &[u8]) -> Verdict {
    let end = data.len().min(BTRFS_MAX_UNCOMPRESSED);
    let mut sample = Vec::with_capacity(MAX_SAMPLE_SIZE);
    if end >= SAMPLING_READ_SIZE {
        for pos in (0..=end - SAMPLING_READ_SIZE).step_by(SAMPLING_INTERVAL) {
            sample.extend_from_slice(&data[pos..pos + SAMPLING_READ_SIZE]);
        }
    } else if end > 0 {
        let mut page = [0u8; 4096];
        page[..end].copy_from_slice(&data[..end]);
        for pos in (0..page.len() - SAMPLING_READ_SIZE).step_by(SAMPLING_INTERVAL) {
            sample.extend_from_slice(&page[pos..pos + SAMPLING_READ_SIZE]);
        }
    }
    verdict_for_sample(&sample)
}

#[cfg(test)]
mod tests {
    use super::*;
    use highmem::{Backend, MapCtx, PhysMem, Strategy};

    fn verdict(data: &[u8]) -> Verdict {
        let mem = PhysMem::new(Backend::Heap, 4096, 64).unwrap();
        let pages = FolioVec::from_slice(&mem, data, 0).unwrap();
        let mut ctx = MapCtx::new(&mem, Strategy::KmapLocal).unwrap();
        let mut f = ctx.frame();
        btrfs_compress_heuristic(&mut f, &pages, 0, data.len()).unwrap()
    }

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn zeros_repeat() {
        assert_eq!(verdict(&[0u8; 131072]), Verdict::RepeatedPattern);
    }

    #[test]
    fn random_is_refused() {
        let mut s = 1;
        let d: Vec<u8> = (0..131072).map(|_| lcg(&mut s) as u8).collect();
        assert_eq!(verdict(&d), Verdict::DontCompress);
    }

    #[test]
    fn few_symbols_small_byte_set() {
        let mut s = 7;
        let d: Vec<u8> = (0..131072).map(|_| b'a' + (lcg(&mut s) % 26) as u8).collect();
        assert_eq!(verdict(&d), Verdict::SmallByteSet);
    }

    #[test]
    fn sample_size_and_positions() {
        let mem = PhysMem::new(Backend::Heap, 4096, 64).unwrap();
        let data: Vec<u8> = (0..131072u32).map(|i| (i / 256) as u8).collect();
        let pages = FolioVec::from_slice(&mem, &data, 0).unwrap();
        let mut ctx = MapCtx::new(&mem, Strategy::KmapLocal).unwrap();
        let mut f = ctx.frame();
        let s = collect_sample(&mut f, &pages, 0, data.len()).unwrap();
        // 16 samples (offsets 0, 256, .., 3840) per 4 KiB page: the full 8 KiB sample.
        assert_eq!(s.len(), MAX_SAMPLE_SIZE);
        assert_eq!(&s[..16], &data[..16]);
        assert_eq!(&s[16..32], &data[256..272]);
        assert_eq!(ctx.counters().maps, 32, "one kmap_local per page");
    }

    #[test]
    fn verdict_of_bytes_is_the_paged_verdict() {
        let mut seed = 7;
        let mut data: Vec<u8> =
            (0..140_000).map(|i| if i % 3 == 0 { lcg(&mut seed) as u8 } else { (i / 100) as u8 }).collect();
        for n in [0, 1, 10, 15, 16, 17, 255, 256, 300, 4095, 4096, 4097, 5000, 65_537, 131_072, 140_000] {
            assert_eq!(verdict_of_bytes(&data[..n]), verdict(&data[..n]), "{n} bytes");
        }
        // Random bytes over the same lengths (other verdicts).
        data.iter_mut().for_each(|b| *b = lcg(&mut seed) as u8);
        for n in [10, 300, 4097, 131_072] {
            assert_eq!(verdict_of_bytes(&data[..n]), verdict(&data[..n]), "random, {n} bytes");
        }
    }
}
