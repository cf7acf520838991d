//! Checked little-endian reads of on-disk structures: every field read names its structure, and
//! a read past the end is [`CorruptKind::Short`], never a panic.

use crate::error::{CorruptKind, Result};

/// An on-disk structure's bytes, named for error messages.
#[derive(Clone, Copy)]
pub(crate) struct Le<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) what: &'static str,
}

impl<'a> Le<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, what }
    }

    /// `len` bytes at `offset`.
    pub(crate) fn slice(&self, offset: usize, len: usize) -> Result<&'a [u8]> {
        let short = || CorruptKind::Short { what: self.what, offset, len, size: self.bytes.len() };
        let end = offset.checked_add(len).ok_or_else(short)?;
        Ok(self.bytes.get(offset..end).ok_or_else(short)?)
    }

    /// The bytes from `offset` to the end.
    pub(crate) fn rest(&self, offset: usize) -> Result<&'a [u8]> {
        self.slice(offset, self.bytes.len().saturating_sub(offset))
    }

    fn array<const N: usize>(&self, offset: usize) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.slice(offset, N)?);
        Ok(a)
    }

    pub(crate) fn u8(&self, offset: usize) -> Result<u8> {
        Ok(self.array::<1>(offset)?[0])
    }

    pub(crate) fn u16(&self, offset: usize) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(offset)?))
    }

    pub(crate) fn u32(&self, offset: usize) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(offset)?))
    }

    pub(crate) fn u64(&self, offset: usize) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(offset)?))
    }

    pub(crate) fn i64(&self, offset: usize) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array(offset)?))
    }

    pub(crate) fn uuid(&self, offset: usize) -> Result<[u8; 16]> {
        self.array(offset)
    }

    /// A u16 length field as a usize.
    pub(crate) fn len16(&self, offset: usize) -> Result<usize> {
        Ok(usize::from(self.u16(offset)?))
    }

    /// A u32 length or offset field as a usize.
    pub(crate) fn len32(&self, offset: usize) -> Result<usize> {
        to_usize(u64::from(self.u32(offset)?), self.what)
    }
}

/// A 64-bit size as a usize, or [`CorruptKind::TooBig`].
pub(crate) fn to_usize(v: u64, what: &'static str) -> Result<usize> {
    Ok(usize::try_from(v).map_err(|_| CorruptKind::TooBig(what))?)
}

/// A usize as a u64 (lossless on every platform Rust supports).
pub(crate) fn to_u64(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}
