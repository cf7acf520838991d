//! A library read past a mapping (7.2-rc3's `kmap_local_folio()` of one page handed the rest of a
//! large folio) is a fault: counted and refused on every backend, and on the emulated-highmem
//! backend under `FaultPolicy::Trap` a real SIGSEGV at the byte after the slot's page, as the
//! kernel took its page fault at the address after the fixmap slot.

use highmem::{Backend, FaultPolicy, FolioVec, KernelConfig, MapCtx, MapError, PhysMem, Strategy, Zone};

const FOLIO: usize = 32 << 10;

/// One 32 KiB folio in HighMem, mapped with kmap_local at `off`: the library is handed the rest
/// of the folio and reads `read` bytes of it.
fn read_past(
    backend: Backend,
    policy: FaultPolicy,
    zone: Zone,
    off: usize,
    read: usize,
) -> (Result<(), MapError>, u64) {
    let mem = PhysMem::new(backend, 4096, 64).unwrap();
    let data: Vec<u8> = (0..FOLIO).map(|i| (i % 251) as u8).collect();
    let mut pages = FolioVec::from_slice(&mem, &data, 3).unwrap();
    pages.set_zone(zone);
    let mut ctx = MapCtx::new(&mem, Strategy::KmapLocal).unwrap();
    ctx.set_config(KernelConfig::X86_32_PAE);
    ctx.set_fault_policy(policy);
    let r = {
        let mut frame = ctx.frame();
        let m = frame.map(&pages, off, FOLIO - off).unwrap();
        let (handed, covers) = m.handed(FOLIO - off);
        assert_eq!(handed, &data[off..], "the bytes handed are the folio's");
        assert_eq!(covers, if zone == Zone::HighMem { 4096 - off % 4096 } else { FOLIO - off });
        m.check_read(FOLIO - off, read)
    };
    (r, ctx.events().faults)
}

#[test]
fn a_read_within_the_page_is_no_fault() {
    for backend in backends() {
        let (r, faults) = read_past(backend, FaultPolicy::Record, Zone::HighMem, 100, 3996);
        assert!(r.is_ok(), "{backend:?}: {r:?}");
        assert_eq!(faults, 0);
    }
}

#[test]
fn a_read_past_a_highmem_page_is_a_fault() {
    for backend in backends() {
        let (r, faults) = read_past(backend, FaultPolicy::Record, Zone::HighMem, 100, 3997);
        match r {
            Err(MapError::Fault { mapped: 3996, handed, read: 3997 }) => assert_eq!(handed, FOLIO - 100),
            other => panic!("{backend:?}: {other:?}"),
        }
        assert_eq!(faults, 1);
    }
}

#[test]
fn a_lowmem_folio_is_mapped_whole() {
    // kmap_local_folio() of a lowmem page is page_address(): the whole folio is in the direct map.
    for backend in backends() {
        let (r, faults) = read_past(backend, FaultPolicy::Record, Zone::Normal, 100, FOLIO - 100);
        assert!(r.is_ok(), "{backend:?}: {r:?}");
        assert_eq!(faults, 0);
    }
}

fn backends() -> Vec<Backend> {
    if cfg!(miri) {
        vec![Backend::Heap]
    } else {
        Backend::ALL.to_vec()
    }
}

/// The child of [`the_emulated_highmem_backend_traps_the_read`]: it dies here.
#[test]
#[cfg_attr(miri, ignore = "system calls")]
fn trap_child() {
    if std::env::var_os("HIGHMEM_FAULT_CHILD").is_none() {
        return; // only as the child
    }
    let _ = read_past(Backend::EmulatedHighmem, FaultPolicy::Trap, Zone::HighMem, 0, 8192);
    // Not reached: the read of the byte after the slot's page faults.
    std::process::exit(0);
}

#[test]
#[cfg(unix)]
#[cfg_attr(miri, ignore = "system calls")]
fn the_emulated_highmem_backend_traps_the_read() {
    use std::os::unix::process::ExitStatusExt;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "trap_child", "--nocapture", "--test-threads", "1"])
        .env("HIGHMEM_FAULT_CHILD", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(11),
        "the child was to die of SIGSEGV; status {:?}, output {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}
