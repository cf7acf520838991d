//! Paths in the image as the commands' PATH arguments name them: raw bytes, `/`-separated,
//! leading and trailing slashes ignored.

/// True when `path` lies strictly under directory `dir`.
pub(crate) fn under(path: &[u8], dir: &[u8]) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

/// `b` without leading and trailing slashes.
pub(crate) fn trim_slashes(mut b: &[u8]) -> &[u8] {
    while let [b'/', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b'/'] = b {
        b = rest;
    }
    b
}

/// True when `path` is `filter` or lies under it (an empty filter, or `/`, is everything).
pub(crate) fn at_or_under(path: &[u8], filter: &[u8]) -> bool {
    let f = trim_slashes(filter);
    f.is_empty() || path == f || under(path, f)
}
