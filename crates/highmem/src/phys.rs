//! "Physical" memory: page frames, folios and the page-cache-like [`FolioVec`].

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::backend::{self, HeapStore, Store};
use crate::events::Zone;
use crate::MapError;

/// Which memory backend holds the frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// All frames always mapped (the 64-bit direct map); no system calls; Miri-clean.
    Heap,
    /// Frames in a memfd, mapped on demand with real `mmap`/`munmap` (32-bit highmem emulation).
    EmulatedHighmem,
}

impl Backend {
    /// Every backend, in display order.
    pub const ALL: [Backend; 2] = [Backend::Heap, Backend::EmulatedHighmem];

    /// Short name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Heap => "heap",
            Backend::EmulatedHighmem => "highmem",
        }
    }

    /// Parse a name given by [`Backend::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == s)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Page sizes the model supports (sectors are always 4 KiB).
pub const SUPPORTED_PAGE_SIZES: [usize; 3] = [4096, 16384, 65536];

struct Allocator {
    used: Vec<bool>,
    in_use: usize,
    /// Every frame below this one is in use (a search starts here, not at 0).
    first_free: usize,
}

impl Allocator {
    fn alloc(&mut self, order: u32) -> Option<usize> {
        let n = 1usize << order;
        let total = self.used.len();
        // Lowest aligned run first: recently freed, already-touched frames are reused (like the
        // kernel's hot per-CPU page lists) instead of faulting in fresh memory.
        let mut pfn = self.first_free.next_multiple_of(n);
        while pfn + n <= total {
            match self.used[pfn..pfn + n].iter().rposition(|&u| u) {
                None => {
                    self.used[pfn..pfn + n].fill(true);
                    self.in_use += n;
                    if pfn == self.first_free {
                        self.first_free = pfn + n;
                    }
                    return Some(pfn);
                }
                Some(busy) => pfn = (pfn + busy + 1).next_multiple_of(n),
            }
        }
        None
    }

    fn free(&mut self, pfn: usize, order: u32) {
        let n = 1usize << order;
        debug_assert!(self.used[pfn..pfn + n].iter().all(|&u| u), "double free of frames");
        self.used[pfn..pfn + n].fill(false);
        self.in_use -= n;
        self.first_free = self.first_free.min(pfn);
    }
}

pub(crate) struct PhysInner {
    pub(crate) store: Store,
    pub(crate) page_size: usize,
    nr_frames: usize,
    alloc: Mutex<Allocator>,
    backend: Backend,
}

/// A pool of page frames ("physical memory") of one page size on one backend.
///
/// Cheap to clone (a shared handle). Frames are handed out as [`Folio`]s.
#[derive(Clone)]
pub struct PhysMem {
    pub(crate) inner: Arc<PhysInner>,
}

impl fmt::Debug for PhysMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhysMem")
            .field("backend", &self.inner.backend)
            .field("page_size", &self.inner.page_size)
            .field("nr_frames", &self.inner.nr_frames)
            .finish()
    }
}

impl PhysMem {
    /// Create `nr_frames` frames of `page_size` bytes on `backend`.
    pub fn new(backend: Backend, page_size: usize, nr_frames: usize) -> Result<Self, MapError> {
        if !SUPPORTED_PAGE_SIZES.contains(&page_size) {
            return Err(MapError::BadPageSize(page_size));
        }
        let bytes = nr_frames
            .checked_mul(page_size)
            .filter(|&b| b > 0 && u64::try_from(b).is_ok_and(|b| b <= 1 << 40))
            .ok_or(MapError::OutOfFrames)?;
        let store = match backend {
            Backend::Heap => Store::Heap(HeapStore::new(bytes).map_err(MapError::Os)?),
            #[cfg(unix)]
            Backend::EmulatedHighmem => Store::Memfd(backend::MemfdStore::new(bytes).map_err(MapError::Os)?),
            #[cfg(not(unix))]
            Backend::EmulatedHighmem => return Err(MapError::Unsupported("emulated highmem")),
        };
        debug_assert_eq!(store.len(), bytes);
        Ok(Self {
            inner: Arc::new(PhysInner {
                store,
                page_size,
                nr_frames,
                alloc: Mutex::new(Allocator { used: vec![false; nr_frames], in_use: 0, first_free: 0 }),
                backend,
            }),
        })
    }

    /// Page size in bytes.
    pub fn page_size(&self) -> usize {
        self.inner.page_size
    }

    /// The backend holding the frames.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Total number of frames.
    pub fn nr_frames(&self) -> usize {
        self.inner.nr_frames
    }

    /// Frames currently allocated.
    pub fn frames_in_use(&self) -> usize {
        self.inner.alloc.lock().unwrap_or_else(|e| e.into_inner()).in_use
    }

    /// Allocate a zeroed folio of `2^order` physically contiguous frames (models `folio_alloc()`).
    pub fn alloc_folio(&self, order: u32) -> Result<Folio, MapError> {
        let mut folio = self.alloc_folio_dirty(order)?;
        folio.folio_address_mut().fill(0);
        Ok(folio)
    }

    /// Allocate a folio without clearing it: its bytes are whatever the frames last held (never
    /// uninitialised memory: the store starts zeroed). For buffers that are written in full
    /// before they are read, like a read's destination pages (the kernel does not zero page
    /// cache pages before reading into them either).
    pub fn alloc_folio_dirty(&self, order: u32) -> Result<Folio, MapError> {
        if order > 10 {
            return Err(MapError::BadOrder(order));
        }
        let pfn =
            self.inner.alloc.lock().unwrap_or_else(|e| e.into_inner()).alloc(order).ok_or(MapError::OutOfFrames)?;
        Ok(Folio { mem: self.clone(), pfn, order, zone: Zone::Normal })
    }
}

/// A folio: `2^order` physically contiguous page frames with one owner.
///
/// Dropping it frees the frames (models `folio_put()` of the last reference).
pub struct Folio {
    mem: PhysMem,
    pfn: usize,
    order: u32,
    zone: Zone,
}

impl fmt::Debug for Folio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Folio").field("pfn", &self.pfn).field("order", &self.order).finish()
    }
}

impl Drop for Folio {
    fn drop(&mut self) {
        self.mem.inner.alloc.lock().unwrap_or_else(|e| e.into_inner()).free(self.pfn, self.order);
    }
}

impl Folio {
    /// Page frame number of the first page (`folio_pfn()`).
    pub fn pfn(&self) -> usize {
        self.pfn
    }

    /// Folio order (`folio_order()`).
    pub fn order(&self) -> u32 {
        self.order
    }

    /// The zone the folio was allocated from (`folio_test_highmem()`).
    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// Say which zone the folio stands for (the page cache on a 32-bit HIGHMEM machine comes
    /// from HighMem; the pages btrfs allocates with GFP_NOFS are lowmem).
    pub fn set_zone(&mut self, zone: Zone) {
        self.zone = zone;
    }

    /// Number of pages (`folio_nr_pages()`).
    pub fn nr_pages(&self) -> usize {
        1 << self.order
    }

    /// Size in bytes (`folio_size()`).
    pub fn size(&self) -> usize {
        self.mem.inner.page_size << self.order
    }

    /// The memory this folio lives in.
    pub fn mem(&self) -> &PhysMem {
        &self.mem
    }

    pub(crate) fn phys_off(&self) -> usize {
        self.pfn * self.mem.inner.page_size
    }

    /// The folio's bytes through the direct map (models `folio_address()` of a lowmem folio).
    ///
    /// Costs nothing and is not counted: the kernel uses it for compressed folios, which are
    /// never allocated from highmem.
    pub fn folio_address(&self) -> &[u8] {
        backend::folio_bytes(self)
    }

    /// Mutable [`Folio::folio_address`].
    pub fn folio_address_mut(&mut self) -> &mut [u8] {
        backend::folio_bytes_mut(self)
    }

    /// The store holding the frames.
    pub(crate) fn store(&self) -> &Store {
        &self.mem.inner.store
    }
}

/// An ordered run of folios holding one logical byte range: a file range in the page cache or
/// the pages of a compressed extent (`cb->compressed_folios`).
#[derive(Debug, Default)]
pub struct FolioVec {
    folios: Vec<Folio>,
    starts: Vec<usize>,
    len: usize,
}

impl FolioVec {
    /// An empty vector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allocate folios of `order` covering at least `bytes` bytes (zeroed).
    pub fn alloc(mem: &PhysMem, bytes: usize, order: u32) -> Result<Self, MapError> {
        let mut v = Self::new();
        while v.len < bytes {
            v.push(mem.alloc_folio(order)?);
        }
        Ok(v)
    }

    /// Allocate folios of `order` without clearing them (see [`PhysMem::alloc_folio_dirty`]).
    pub fn alloc_dirty(mem: &PhysMem, bytes: usize, order: u32) -> Result<Self, MapError> {
        let mut v = Self::new();
        while v.len < bytes {
            v.push(mem.alloc_folio_dirty(order)?);
        }
        Ok(v)
    }

    /// Allocate folios of `order` and fill them with `data` (the write path putting data into the
    /// page cache). The tail of the last folio stays zero.
    pub fn from_slice(mem: &PhysMem, data: &[u8], order: u32) -> Result<Self, MapError> {
        let mut v = Self::alloc(mem, data.len(), order)?;
        v.write_direct(0, data);
        Ok(v)
    }

    /// Put every folio in `zone` (see [`Folio::set_zone`]).
    pub fn set_zone(&mut self, zone: Zone) {
        for f in &mut self.folios {
            f.set_zone(zone);
        }
    }

    /// Put `fraction` (0.0 to 1.0) of the folios in HighMem and the rest in Normal, spread
    /// evenly (folio `i` is HighMem when `floor((i + 1) * fraction)` steps up): a page cache
    /// partly served from Normal because HighMem ran low. 1.0 is all HighMem, 0.0 none.
    pub fn set_highmem_fraction(&mut self, fraction: f64) {
        let f = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
        for (i, folio) in self.folios.iter_mut().enumerate() {
            let step = ((i + 1) as f64 * f).floor() > (i as f64 * f).floor();
            folio.set_zone(if step { Zone::HighMem } else { Zone::Normal });
        }
    }

    /// Append a folio.
    pub fn push(&mut self, folio: Folio) {
        self.starts.push(self.len);
        self.len += folio.size();
        self.folios.push(folio);
    }

    /// Bytes covered by all folios.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no folio is held.
    pub fn is_empty(&self) -> bool {
        self.folios.is_empty()
    }

    /// Number of folios.
    pub fn nr_folios(&self) -> usize {
        self.folios.len()
    }

    /// The folios.
    pub fn folios(&self) -> &[Folio] {
        &self.folios
    }

    /// Drop folios from the end until at most `n` remain.
    pub fn truncate_folios(&mut self, n: usize) {
        self.folios.truncate(n);
        self.starts.truncate(n);
        self.len = self.folios.iter().map(Folio::size).sum();
    }

    /// The folio holding byte `off` and the offset inside it (models `filemap_get_folio()`).
    pub fn locate(&self, off: usize) -> Option<(usize, usize)> {
        if off >= self.len {
            return None;
        }
        let idx = match self.starts.binary_search(&off) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        Some((idx, off - self.starts[idx]))
    }

    /// The offset just past the folio holding byte `off` (`folio_pos() + folio_size()`), or
    /// `off` itself past the end.
    pub fn folio_end(&self, off: usize) -> usize {
        self.locate(off).map_or(off, |(idx, _)| self.starts[idx] + self.folios[idx].size())
    }

    /// Allocate folios of the given orders in turn and fill them with `data` (a page cache whose
    /// folios follow the writes that filled it). Orders run out: the last one repeats.
    pub fn from_slice_orders(mem: &PhysMem, data: &[u8], orders: &[u32]) -> Result<Self, MapError> {
        let mut v = Self::new();
        let mut i = 0;
        while v.len < data.len() {
            let order = orders.get(i).or(orders.last()).copied().unwrap_or(0);
            v.push(mem.alloc_folio(order)?);
            i += 1;
        }
        v.write_direct(0, data);
        Ok(v)
    }

    pub(crate) fn folio(&self, idx: usize) -> &Folio {
        &self.folios[idx]
    }

    /// Copy `src` in at `off` through the direct map (set-up, not counted).
    pub fn write_direct(&mut self, mut off: usize, mut src: &[u8]) {
        assert!(off + src.len() <= self.len, "write_direct past the end");
        while !src.is_empty() {
            let (i, o) = self.locate(off).expect("checked above");
            let dst = &mut self.folios[i].folio_address_mut()[o..];
            let n = dst.len().min(src.len());
            dst[..n].copy_from_slice(&src[..n]);
            src = &src[n..];
            off += n;
        }
    }

    /// Copy bytes out from `off` through the direct map (checking results, not counted).
    pub fn read_direct(&self, mut off: usize, mut dst: &mut [u8]) {
        assert!(off + dst.len() <= self.len, "read_direct past the end");
        while !dst.is_empty() {
            let (i, o) = self.locate(off).expect("checked above");
            let src = &self.folios[i].folio_address()[o..];
            let n = dst.len().min(src.len());
            dst[..n].copy_from_slice(&src[..n]);
            dst = &mut dst[n..];
            off += n;
        }
    }

    /// `len` bytes from `off` as a vector (through the direct map, not counted).
    pub fn to_vec(&self, off: usize, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.read_direct(off, &mut v);
        v
    }

    /// Direct-map view of `len` bytes at `off`, which must not cross a folio
    /// (models `folio_address() + offset` on lowmem folios; not counted).
    pub fn folio_address_mut(&mut self, off: usize, len: usize) -> &mut [u8] {
        let (i, o) = self.locate(off).expect("offset inside the folios");
        &mut self.folios[i].folio_address_mut()[o..o + len]
    }
}
