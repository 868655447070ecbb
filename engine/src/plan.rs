//! Inputs named by a file rather than found by walking a folder: list
//! files (one local path or `s3://` URL per line) and S3 Inventory reports.
//! Both are read as streams, one entry at a time, and turn into the same
//! [`Listing`]s as folders and prefixes do.

use std::ops::ControlFlow;
use std::path::{Component, Path, PathBuf};

use crate::batch::{Listing, Planned};
use crate::error::Error;
use crate::io::RemoteInputs;

/// Whether `relative` is a non-empty path with only normal components
/// (no `..`, no root), safe to join below an output folder or prefix.
pub(crate) fn safe_relative(relative: &Path) -> bool {
    relative.components().next().is_some() && relative.components().all(|c| matches!(c, Component::Normal(_)))
}

/// The output path of a list entry: an `s3://bucket/key` keeps its key, a
/// local path its components without the root (`/archive/a.ts` → `archive/a.ts`).
fn relative_of(name: &str) -> PathBuf {
    match name.strip_prefix("s3://") {
        Some(rest) => rest.split_once('/').map(|(_, key)| key).unwrap_or("").split('/').filter(|c| !c.is_empty()).collect(),
        None => Path::new(name).components().filter(|c| matches!(c, Component::Normal(_))).collect(),
    }
}

/// One named entry (from a list file or an inventory) as a listing.
fn entry(name: &str, size: Option<u64>, etag: Option<String>, origin: &Path, remote: Option<&dyn RemoteInputs>) -> Listing {
    let source = PathBuf::from(name);
    let relative = relative_of(name);
    if !safe_relative(&relative) || Path::new(name).components().any(|c| c == Component::ParentDir) {
        return Listing::Failed(source.clone(), Error::invalid(&source, "the name does not make a safe relative output path"));
    }
    match remote.filter(|r| r.handles(&source)) {
        Some(remote) => {
            let listed = match (size, etag) {
                (Some(size), Some(etag)) => Ok(crate::io::Listed { url: name.to_string(), relative, size, etag }),
                // Without both, one HEAD request gives the size and the ETag to pin reads to.
                _ => remote.stat(name).map(|l| crate::io::Listed { relative, ..l }),
            };
            match listed {
                Ok(item) => Listing::File(Planned::remote(item)),
                Err(e) => Listing::Failed(source.clone(), e.for_file(&source)),
            }
        }
        None if name.starts_with("s3://") => {
            Listing::Failed(source.clone(), Error::invalid(origin, format!("{name}: s3:// entries need the AWS build")))
        }
        None => match std::fs::metadata(&source) {
            Ok(m) if m.is_file() => Listing::File(Planned::local(source.clone(), &crate::batch::resolve(&source), relative, m.len())),
            Ok(_) => Listing::Failed(source.clone(), Error::invalid(&source, "not a regular file")),
            Err(e) => Listing::Failed(source.clone(), Error::io(&source, "open", e)),
        },
    }
}

/// List the entries of the list file `path` (`-` for standard input).
pub(crate) fn list_file(path: &Path, remote: Option<&dyn RemoteInputs>, each: &mut dyn FnMut(Listing) -> ControlFlow<()>) -> ControlFlow<()> {
    let reader: Box<dyn std::io::BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(path) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => return each(Listing::Failed(path.to_path_buf(), Error::io(path, "open list file", e))),
        }
    };
    let mut flow = ControlFlow::Continue(());
    let read = crate::inputs::read_list(reader, path, &mut |named| hand_over(named, path, remote, each, &mut flow));
    ended(path, read.map(|_| ()), flow, each)
}

/// Hand one named entry to `each` as a listing; an `Err` stops the reader when `each` breaks.
fn hand_over(
    named: crate::inputs::Named,
    origin: &Path,
    remote: Option<&dyn RemoteInputs>,
    each: &mut dyn FnMut(Listing) -> ControlFlow<()>,
    flow: &mut ControlFlow<()>,
) -> crate::Result<()> {
    *flow = each(entry(&named.name, named.size, named.etag, origin, remote));
    match flow {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(Error::Usage("stopped".into())),
    }
}

/// How reading `path` ended: stopped by `each`, failed (a listing failure), or done.
fn ended(path: &Path, read: crate::Result<()>, flow: ControlFlow<()>, each: &mut dyn FnMut(Listing) -> ControlFlow<()>) -> ControlFlow<()> {
    match (read, flow) {
        (_, ControlFlow::Break(())) => ControlFlow::Break(()),
        (Err(e), _) => each(Listing::Failed(path.to_path_buf(), e)),
        (Ok(()), flow) => flow,
    }
}

/// List the objects of an S3 Inventory report: its `manifest.json` (whose
/// data files are read from the inventory's destination bucket) or one
/// `.csv.gz` data file; local or `s3://`. Rows stream through one at a time.
pub(crate) fn inventory(path: &Path, remote: Option<&dyn RemoteInputs>, each: &mut dyn FnMut(Listing) -> ControlFlow<()>) -> ControlFlow<()> {
    let text = path.to_string_lossy();
    let open = |name: &str| -> crate::Result<Box<dyn std::io::Read + Send>> {
        match remote.filter(|r| r.handles(Path::new(name))) {
            Some(remote) => remote.fetch(name),
            None if name.starts_with("s3://") => Err(Error::invalid(Path::new(name), "s3:// inventories need the AWS build")),
            None => std::fs::File::open(name).map(|f| Box::new(f) as Box<dyn std::io::Read + Send>).map_err(|e| Error::io(Path::new(name), "open inventory", e)),
        }
    };
    let mut flow = ControlFlow::Continue(());
    let mut rows = |name: &str, schema: Option<&[String]>, flow: &mut ControlFlow<()>| -> crate::Result<()> {
        let origin = PathBuf::from(name);
        let reader = open(name)?;
        crate::inputs::read_inventory_csv_gz(reader, &origin, schema, &mut |named| hand_over(named, &origin, remote, &mut *each, flow)).map(|_| ())
    };
    let result = if text.ends_with(".json") {
        (|| -> crate::Result<()> {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut open(&text)?, &mut bytes).map_err(|e| Error::io(path, "read inventory manifest", e))?;
            let manifest = crate::inputs::parse_inventory_manifest(&bytes, path)?;
            // Data files sit beside manifest.json when it is local, in the destination bucket otherwise.
            for file in &manifest.files {
                let name = match text.starts_with("s3://") {
                    true => format!("s3://{}/{}", manifest.destination_bucket_name(), file.key),
                    false => path.parent().unwrap_or(Path::new(".")).join(file.key.rsplit('/').next().unwrap_or(&file.key)).display().to_string(),
                };
                rows(&name, Some(&manifest.file_schema), &mut flow)?;
                if flow.is_break() {
                    break;
                }
            }
            Ok(())
        })()
    } else {
        rows(&text, None, &mut flow)
    };
    ended(path, result, flow, each)
}
