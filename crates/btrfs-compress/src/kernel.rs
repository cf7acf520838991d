//! What a kernel release does on btrfs's compression paths, in one place: the loop era, the
//! deflate era, the page cache's large folios, the tail and inline rules. The replay's loops
//! ([`crate::replay::KernelLoop`]), `estimate`'s rules and the codecs' [`crate::Options`] all read
//! it; a new era is one more arm here.
//!
//! Facts, with where they were read (Debian's linux-source-7.2, 7.2.13, unless noted):
//! - Compression loop shape: `*_compress_pages()` up to 6.9, `*_compress_folios()` 6.10-6.19,
//!   `*_compress_bio()` from 7.0; input chunks to the end of the page up to 6.19, to the end of
//!   the folio from 7.0 (`btrfs_calc_input_length()`, compression.h).
//! - Deflate: `flush_pending()` moves the bit buffer's whole bytes out from 6.3
//!   (lib/zlib_deflate), which changes zlib's bytes.
//! - Large data folios: from 7.2 by default (6.17-7.1 only under CONFIG_BTRFS_EXPERIMENTAL, not
//!   modeled); `open_ctree()` (disk-io.c) turns them off under CONFIG_HIGHMEM in 7.2.13 (7.2-rc3
//!   had them there too); at most `BTRFS_MAX_BLOCKS_PER_FOLIO` = `BITS_PER_LONG` blocks without
//!   CONFIG_BTRFS_EXPERIMENTAL (fs.h, `calc_block_max_order()`).
//! - 7.x hands the compressor the whole sector-rounded range of a file's last sector, keeps a
//!   compressed inline extent only when it is smaller than the file (both seen on 7.2 kernels,
//!   fixtures/7.2.13+deb14-amd64 and estimate-qemu-7.2.13). 6.12 and 7.2 zero-fill the rest of a
//!   read bio in `btrfs_decompress_bio()` after the codec returns (compression.c; both traced),
//!   where 6.1's codecs did it in their own call.

use highmem::KernelConfig;

use crate::{InputChunk, KernelEra, ZlibBackend};

/// A kernel release, by major and minor version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelProfile {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Large data folios under CONFIG_HIGHMEM too (7.2-rc3, before 7.2.13's exclusion).
    pub large_folios_on_highmem: bool,
}

impl KernelProfile {
    /// Release `major.minor` as shipped.
    pub const fn of(major: u32, minor: u32) -> Self {
        Self { major, minor, large_folios_on_highmem: false }
    }

    /// 7.2-rc3: the 7.2 loops with large data folios under HIGHMEM.
    pub const V7_2_RC3: KernelProfile = KernelProfile { major: 7, minor: 2, large_folios_on_highmem: true };

    /// The 7.x `*_compress_bio()` era (7.0 and later).
    pub fn bio_era(self) -> bool {
        self.major >= 7
    }

    /// The deflate of this release (`flush_pending()` before and since 6.3).
    pub fn deflate_era(self) -> KernelEra {
        KernelEra::of_kernel(self.major, self.minor)
    }

    /// The kernel's own zlib backend of this release.
    pub fn zlib_backend(self) -> ZlibBackend {
        ZlibBackend::Kernel(self.deflate_era())
    }

    /// How the zstd and zlib compression loops size their input chunks.
    pub fn input_chunk(self) -> InputChunk {
        if self.bio_era() {
            InputChunk::Folio
        } else {
            InputChunk::Page
        }
    }

    /// Whether the page cache takes large folios for file data under `config`.
    pub fn large_folios(self, config: KernelConfig) -> bool {
        (self.major, self.minor) >= (7, 2) && (!config.has_highmem() || self.large_folios_on_highmem)
    }

    /// `block_max_order` of a 4 KiB-sector filesystem under `config`: `BITS_PER_LONG` blocks,
    /// 128 KiB (order 5) on 32-bit and 256 KiB (order 6) on 64-bit; 0 without large folios.
    pub fn block_max_order(self, config: KernelConfig) -> u32 {
        match (self.large_folios(config), config.has_highmem()) {
            (false, _) => 0,
            (true, true) => 5,
            (true, false) => 6,
        }
    }

    /// The compressor is handed the whole sector-rounded range of a file's last sector.
    pub fn compresses_whole_last_sector(self) -> bool {
        self.bio_era()
    }

    /// A compressed inline extent is kept only when it is smaller than the file.
    pub fn inline_only_if_smaller(self) -> bool {
        self.bio_era()
    }

    /// `btrfs_decompress_bio()` zero-fills the rest of the read bio after the codec returns:
    /// traced so in 6.12 and 7.2, inside the codec's own call in 6.1 (the release in between
    /// that moved it is not pinned here; 6.12 is taken as the first).
    pub fn zero_fill_after_codec(self) -> bool {
        (self.major, self.minor) >= (6, 12)
    }
}

impl std::fmt::Display for KernelProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}{}", self.major, self.minor, if self.large_folios_on_highmem { "-rc3" } else { "" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eras() {
        let pae = KernelConfig::X86_32_PAE;
        let b64 = KernelConfig::Bit64 { cpus: 2 };
        assert_eq!(KernelProfile::of(6, 1).deflate_era(), KernelEra::Before6_3);
        assert_eq!(KernelProfile::of(6, 12).deflate_era(), KernelEra::Since6_3);
        assert_eq!(KernelProfile::of(6, 12).input_chunk(), InputChunk::Page);
        assert_eq!(KernelProfile::of(7, 2).input_chunk(), InputChunk::Folio);
        assert_eq!(KernelProfile::of(6, 18).block_max_order(b64), 0);
        assert_eq!(KernelProfile::of(7, 2).block_max_order(b64), 6);
        assert_eq!(KernelProfile::of(7, 2).block_max_order(pae), 0);
        assert_eq!(KernelProfile::V7_2_RC3.block_max_order(pae), 5);
        assert!(KernelProfile::of(7, 2).compresses_whole_last_sector());
        assert!(!KernelProfile::of(6, 1).zero_fill_after_codec());
        assert!(KernelProfile::of(6, 12).zero_fill_after_codec());
    }
}
