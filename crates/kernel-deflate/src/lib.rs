//! The Linux kernel's deflate (`lib/zlib_deflate`) in safe Rust, so that btrfs's zlib extents
//! come out byte for byte as the kernel writes them.
//!
//! The kernel's deflate is zlib 1.1.3 with kernel changes; every userspace deflate since zlib
//! 1.2.5.3 (the system zlib, zlib-ng, zlib-rs, miniz_oxide) writes other bytes for the same
//! input and flush pattern: they insert the last strings of a flushed chunk into the hash
//! table when more input arrives, the kernel does not; their header's level bits differ at
//! levels 2 and 5; and from Linux 6.3 the kernel moves whole bytes of its bit buffer out in
//! `flush_pending()`, which decides whether a block ending exactly at the end of a 4 KiB output
//! page is followed by a sync flush's empty stored block ([`KernelEra`]).
//!
//! Modules mirror the C files: [`deflate`](crate::Deflate) (deflate.c), `deftree` (deftree.c),
//! `defutil` (defutil.h). The interface is `z_stream`'s: input and output slices that the call
//! advances ([`Stream`]), [`Flush`] values, [`Status`] results, `total_in`/`total_out`.
//! Settings are those of `zlib_deflateInit()`: windowBits 15, memLevel 8, the default strategy,
//! levels 1 to 9. The code is written from the algorithm's description and the kernel's
//! behaviour; it contains no C.
#![forbid(unsafe_code)]

mod deflate;
mod deftree;
mod defutil;

/// Which kernel's `flush_pending()` to follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KernelEra {
    /// Linux 6.2 and earlier: `flush_pending()` copies the pending bytes only.
    Before6_3,
    /// Linux 6.3 and later ("lib/zlib: DFLTCC deflate does not write all available bits for
    /// Z_NO_FLUSH", February 2023): whole bytes of the bit buffer are moved out first.
    #[default]
    Since6_3,
}

impl KernelEra {
    /// The era of a kernel `major.minor`.
    pub fn of_kernel(major: u32, minor: u32) -> Self {
        if (major, minor) < (6, 3) {
            KernelEra::Before6_3
        } else {
            KernelEra::Since6_3
        }
    }

    /// Name for tables and command lines.
    pub fn name(self) -> &'static str {
        match self {
            KernelEra::Before6_3 => "pre-6.3",
            KernelEra::Since6_3 => "6.3+",
        }
    }
}

/// The `flush` argument of `zlib_deflate()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// `Z_NO_FLUSH`.
    NoFlush,
    /// `Z_SYNC_FLUSH`: end the block and append an empty stored block (`00 00 ff ff`).
    SyncFlush,
    /// `Z_FULL_FLUSH`: as sync, and forget the history.
    FullFlush,
    /// `Z_FINISH`: the final block and the Adler-32 trailer.
    Finish,
}

impl Flush {
    /// The kernel's value of the constant (zlib.h), whose order `zlib_deflate()` compares.
    fn rank(self) -> i32 {
        match self {
            Flush::NoFlush => 0,
            Flush::SyncFlush => 3,
            Flush::FullFlush => 4,
            Flush::Finish => 5,
        }
    }
}

/// What `zlib_deflate()` returned, short of an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `Z_OK`: progress was made (or the output filled).
    Ok,
    /// `Z_STREAM_END`: everything, trailer included, is out (after `Z_FINISH`).
    StreamEnd,
    /// `Z_BUF_ERROR`: no progress was possible (no output room, or nothing to do).
    BufError,
}

/// Errors (`Z_STREAM_ERROR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A level outside 1..=9.
    Level(i32),
    /// The stream was used against its state machine.
    Stream(&'static str),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Level(l) => write!(f, "zlib level {l} is not in 1..=9"),
            Error::Stream(m) => write!(f, "Z_STREAM_ERROR: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// The caller's side of a `z_stream`: `next_in`/`avail_in` as one slice, `next_out`/`avail_out`
/// as another. [`Deflate::deflate`] advances both past what it consumed and produced.
#[derive(Debug)]
pub struct Stream<'a> {
    /// Input not yet consumed.
    pub next_in: &'a [u8],
    /// Output room not yet written.
    pub next_out: &'a mut [u8],
}

/// A deflate stream with the kernel's algorithm (the `deflate_workspace` plus `z_stream`
/// counters).
#[derive(Debug)]
pub struct Deflate {
    s: Box<deflate::State>,
}

impl Deflate {
    /// Models `zlib_deflateInit(strm, level)` (windowBits 15, memLevel 8).
    pub fn new(level: i32, era: KernelEra) -> Result<Self, Error> {
        Ok(Self { s: Box::new(deflate::State::new(level, era)?) })
    }

    /// Models `zlib_deflateReset()` with a new level, reusing the memory.
    pub fn reset(&mut self, level: i32) -> Result<(), Error> {
        self.s.reset(level)
    }

    /// The era this stream follows.
    pub fn era(&self) -> KernelEra {
        self.s.era
    }

    /// Set the era (before the first call after a reset).
    pub fn set_era(&mut self, era: KernelEra) {
        self.s.era = era;
    }

    /// Models `zlib_deflate(strm, flush)`.
    pub fn deflate(&mut self, strm: &mut Stream<'_>, flush: Flush) -> Result<Status, Error> {
        self.s.deflate(strm, flush)
    }

    /// [`Deflate::deflate`] on plain slices, in the manner of flate2's `Compress::compress`:
    /// consumed and produced bytes show in [`Deflate::total_in`] and [`Deflate::total_out`].
    pub fn compress(&mut self, input: &[u8], output: &mut [u8], flush: Flush) -> Result<Status, Error> {
        let mut strm = Stream { next_in: input, next_out: output };
        self.deflate(&mut strm, flush)
    }

    /// Input bytes consumed since the reset (`total_in`).
    pub fn total_in(&self) -> u64 {
        self.s.total_in
    }

    /// Output bytes produced since the reset (`total_out`).
    pub fn total_out(&self) -> u64 {
        self.s.total_out
    }
}

/// Adler-32 (RFC 1950), as `zlib_adler32()` computes it.
pub fn adler32(adler: u32, buf: &[u8]) -> u32 {
    const BASE: u32 = 65521;
    const NMAX: usize = 5552;
    let (mut a, mut b) = (adler & 0xffff, adler >> 16);
    for chunk in buf.chunks(NMAX) {
        // Sixteen bytes at a time: a gains their sum, b gains 16 a plus their sum weighted 16
        // down to 1 (the same totals as byte by byte, so NMAX still bounds them).
        let mut blocks = chunk.chunks_exact(16);
        for blk in &mut blocks {
            let (mut sum, mut weighted) = (0u32, 0u32);
            for (i, &x) in blk.iter().enumerate() {
                sum += u32::from(x);
                weighted += (16 - i as u32) * u32::from(x);
            }
            b += 16 * a + weighted;
            a += sum;
        }
        for &x in blocks.remainder() {
            a += u32::from(x);
            b += a;
        }
        a %= BASE;
        b %= BASE;
    }
    (b << 16) | a
}

/// Compress `data` in one call as a whole zlib stream (`Z_FINISH` only), for tests and tools.
pub fn compress_to_vec(data: &[u8], level: i32, era: KernelEra) -> Result<Vec<u8>, Error> {
    let mut d = Deflate::new(level, era)?;
    let mut out = vec![0u8; data.len() + data.len() / 1000 + 64];
    loop {
        let st = d.compress(&data[d.total_in() as usize..], &mut out[d.total_out() as usize..], Flush::Finish)?;
        match st {
            Status::StreamEnd => break,
            _ if d.total_out() as usize == out.len() => {
                let n = out.len();
                out.resize(n * 2, 0);
            }
            Status::BufError => return Err(Error::Stream("no progress")),
            Status::Ok => {}
        }
    }
    out.truncate(d.total_out() as usize);
    Ok(out)
}
