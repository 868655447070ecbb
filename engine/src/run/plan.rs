//! What a run works on: its inputs (folders, files, store prefixes, list
//! files, S3 Inventory reports) turned into a stream of [`Entry`]s, one per
//! file, filtered to this shard. Listing never holds more than one page of
//! a store's listing or one line of a list file.

use std::ops::ControlFlow;
use std::path::{Component, Path, PathBuf};

use super::filter::Filter;
use super::shard::Shard;
use crate::error::{Error, Result};
use crate::store::local::resolve;
use crate::format::url::S3Url;
use crate::store::{Listed, Store, Stores};

/// One input entry: a file or object to encrypt, as listing found it.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The path or URL as given or listed.
    pub(crate) source: PathBuf,
    /// The source as records name it: the URL, or the resolved local path.
    pub(crate) name: String,
    /// Its path below the input (the output keeps it).
    pub(crate) relative: PathBuf,
    /// Its size at listing.
    pub(crate) size: u64,
    /// A listed remote object (`source` is then its URL), or `None` for a local file.
    pub(crate) remote: Option<Listed>,
    /// Its output may replace an existing one (ours, from an interrupted run; or a redo).
    pub(crate) replace: bool,
}

impl Entry {
    /// A local file; `resolved` is its path with symlinks resolved (see [`resolve`]).
    pub(crate) fn local(source: PathBuf, resolved: &Path, relative: PathBuf, size: u64) -> Self {
        Entry { source, name: resolved.display().to_string(), relative, size, remote: None, replace: false }
    }

    pub(crate) fn remote(item: Listed) -> Self {
        Entry { source: PathBuf::from(&item.url), name: item.url.clone(), relative: item.relative.clone(), size: item.size, remote: Some(item), replace: false }
    }
}


/// What listing hands over, one at a time: every entry under an input is
/// one of these, so nothing is left out without a word.
pub(crate) enum Listing {
    File(Entry),
    /// An entry that cannot be encrypted (counted as a failure).
    Failed(PathBuf, Error),
    /// An entry left out on purpose (`--no-follow-symlinks`), with the reason.
    Skipped(PathBuf, &'static str),
    /// An archived object that cannot be read now (GLACIER, DEEP_ARCHIVE, not restored).
    Archived(Listed),
}

/// `name` for a message: whole when short, else its start, its end (the
/// file's own name) and its length (a 70,000-byte key is not repeated whole
/// on a terminal line).
pub(crate) fn shortened(name: &str) -> String {
    const SHOWN: usize = 100;
    let chars = name.chars().count();
    if chars <= 2 * SHOWN {
        return name.to_string();
    }
    let head: String = name.chars().take(SHOWN).collect();
    let tail: String = name.chars().skip(chars - SHOWN).collect();
    format!("{head}…{tail} ({} bytes)", name.len())
}

/// What a run takes as input.
pub(crate) struct Inputs<'a> {
    /// Files, folders and store prefixes.
    pub(crate) paths: &'a [PathBuf],
    /// List files.
    pub(crate) lists: &'a [PathBuf],
    /// S3 Inventory reports.
    pub(crate) inventories: &'a [PathBuf],
    /// Local files never taken (the run's own manifest and journal).
    pub(crate) exclude: &'a [PathBuf],
    /// Only this shard.
    pub(crate) shard: Option<Shard>,
    /// Only the files these `--include`/`--exclude` rules take (matched on the relative path).
    pub(crate) filter: Option<&'a Filter>,
    /// Follow symbolic links met inside input folders (the default, as
    /// `aws s3 cp` does); without, they are reported skipped. Inputs named
    /// on the command line or in a list are always followed.
    pub(crate) follow_symlinks: bool,
    /// Where URLs are listed and read.
    pub(crate) stores: &'a Stores,
}

impl Inputs<'_> {
    /// Whether every input is a local file or folder.
    pub(crate) fn all_local(&self) -> bool {
        self.lists.is_empty() && self.inventories.is_empty() && !self.paths.iter().any(|p| Stores::is_url(&p.to_string_lossy()))
    }
}

/// Refuse a run whose destination overlaps one of its sources (issue 24,
/// finding 1: `--to` equal to, inside or around a source prefix replaced
/// plaintext with ciphertext under `--force`, or re-listed its own outputs
/// forever). Local folders are compared after resolving `..` and symlinks;
/// S3 prefixes byte for byte, as listing reads them (`s3://b/p` covers the
/// key `p` and everything under `p/`). `destination` is the destination's
/// own location (`s3://bucket/prefix/`), `out_real` a local one, resolved.
pub(crate) fn check_destination_apart_from_sources(inputs: &Inputs<'_>, out_real: Option<&Path>, destination: &str) -> Result<()> {
    for input in inputs.paths {
        let name = input.to_string_lossy();
        if Stores::is_url(&name) {
            if out_real.is_some() {
                continue;
            }
            let (Ok((bucket, key)), Ok((out_bucket, out_prefix))) = (S3Url::split(&name), S3Url::split(destination)) else { continue };
            if bucket != out_bucket {
                continue;
            }
            let folder = if key.is_empty() || key.ends_with('/') { key.to_string() } else { format!("{key}/") };
            let how = if out_prefix == folder || out_prefix == key {
                Some("is the same prefix as")
            } else if out_prefix.starts_with(&folder) {
                Some("lies inside")
            } else if key.starts_with(out_prefix) {
                Some("contains")
            } else {
                None
            };
            if let Some(how) = how {
                return Err(Error::Usage(format!(
                    "{name}: the destination {destination} {how} this source: its outputs would replace or re-list sources; choose a --to apart from every source"
                )));
            }
            continue;
        }
        let Some(out) = out_real else { continue };
        let source = resolve(input);
        if input.is_dir() && out.starts_with(&source) {
            return Err(Error::Usage(format!(
                "{}: output folder {} is inside the input tree; choose an --out outside it",
                input.display(),
                out.display()
            )));
        }
        if source.starts_with(out) {
            return Err(Error::Usage(format!(
                "{}: the source lies inside the output folder {}: its outputs could replace sources; choose an --out apart from every source",
                input.display(),
                out.display()
            )));
        }
    }
    Ok(())
}

/// List every file of the job, handing each (or each listing failure) to
/// `each` as it is found; `each` breaks to stop listing early.
pub(crate) fn list(inputs: &Inputs<'_>, each: &mut dyn FnMut(Listing) -> ControlFlow<()>) {
    let stores = inputs.stores;
    let mut shard_each = |item: Listing| match (&item, inputs.shard) {
        (Listing::File(f), Some(shard)) if !shard.takes(&f.relative) => ControlFlow::Continue(()),
        (Listing::File(f), _) if inputs.filter.is_some_and(|filter| !filter.takes(&f.relative)) => ControlFlow::Continue(()),
        (Listing::Archived(a), Some(shard)) if !shard.takes(&a.relative) => ControlFlow::Continue(()),
        (Listing::Archived(a), _) if inputs.filter.is_some_and(|filter| !filter.takes(&a.relative)) => ControlFlow::Continue(()),
        _ => each(item),
    };
    let exclude: Vec<PathBuf> = inputs.exclude.iter().map(|p| resolve(p)).collect();
    for input in inputs.paths {
        let flow = match stores.remote_path(input) {
            Ok(Some(store)) => list_remote(input, store, &mut shard_each),
            Ok(None) => list_local(input, &exclude, inputs.follow_symlinks, &mut shard_each),
            Err(e) => shard_each(Listing::Failed(input.clone(), e)),
        };
        if flow.is_break() {
            return;
        }
    }
    for list in inputs.lists {
        if list_file(list, stores, &mut shard_each).is_break() {
            return;
        }
    }
    for report in inputs.inventories {
        if inventory(report, stores, &mut shard_each).is_break() {
            return;
        }
    }
}

fn list_remote(input: &Path, store: &dyn Store, each: &mut dyn FnMut(Listing) -> ControlFlow<()>) -> ControlFlow<()> {
    let mut found = 0u64;
    let mut flow = ControlFlow::Continue(());
    let listed = store.list(&input.to_string_lossy(), &mut |item: Listed| {
        if flow.is_break() {
            return;
        }
        found += 1;
        // The key below the prefix is the output's name byte for byte; the
        // destination says if it cannot hold it (`Destination::refuses_name`).
        flow = match is_folder_marker(&item.url) {
            true => each(Listing::Skipped(PathBuf::from(&item.url), FOLDER_MARKER)),
            false if item.archived.is_some() => each(Listing::Archived(item)),
            false => each(Listing::File(Entry::remote(item))),
        };
    });
    match listed {
        Ok(()) if found == 0 => each(Listing::Failed(input.to_path_buf(), Error::invalid(input, "no objects under this prefix"))),
        Ok(()) => flow,
        Err(e) => each(Listing::Failed(input.to_path_buf(), e.for_file(input))),
    }
}

/// Why a local path cannot be encrypted under its name, if it cannot.
///
/// Names must be UTF-8: S3 keys and manifest records are UTF-8 text, and a
/// lossy rendering (U+FFFD) would name another file. Such a file is refused
/// alone, with one line naming it; the files beside it go on.
fn check_local_name(path: &Path) -> Result<()> {
    if path.to_str().is_none() {
        return Err(Error::invalid(
            path,
            "the file name is not valid UTF-8 (S3 keys and manifest records are UTF-8); rename it to encrypt it",
        ));
    }
    Ok(())
}

fn list_local(input: &Path, exclude: &[PathBuf], follow_symlinks: bool, each: &mut dyn FnMut(Listing) -> ControlFlow<()>) -> ControlFlow<()> {
    use crate::store::local::file_kind;
    let excluded = |path: &Path| exclude.iter().any(|x| x.file_name() == path.file_name()) && exclude.contains(&resolve(path));
    let meta = match std::fs::metadata(input) {
        Ok(m) => m,
        Err(e) => return each(Listing::Failed(input.to_path_buf(), Error::io(input, "open", e))),
    };
    if !meta.is_dir() {
        if let Err(e) = check_local_name(input) {
            return each(Listing::Failed(input.to_path_buf(), e));
        }
        if !meta.is_file() {
            // Refused before it is opened: a FIFO would block the open forever.
            let reason = format!("not a regular file ({}); refused", file_kind(&meta.file_type()));
            return each(Listing::Failed(input.to_path_buf(), Error::invalid(input, reason)));
        }
        let name = input.file_name().map(PathBuf::from).unwrap_or_else(|| input.to_path_buf());
        return each(Listing::File(Entry::local(input.to_path_buf(), &resolve(input), name, meta.len())));
    }
    // Resolved once: entries below are the resolved root joined with their relative path.
    let root = resolve(input);
    let mut found = 0u64;
    // Following links, walkdir reports a link to one of its own ancestors as a loop error (listed as failed).
    for entry in walkdir::WalkDir::new(input).follow_links(follow_symlinks).sort_by_file_name() {
        let item = match entry {
            Ok(e) if e.file_type().is_dir() => continue,
            Ok(e) if e.file_type().is_file() && excluded(e.path()) => continue,
            Ok(e) => {
                found += 1;
                let Ok(relative) = e.path().strip_prefix(input).map(Path::to_path_buf) else {
                    let path = e.path().to_path_buf();
                    each(Listing::Failed(path.clone(), Error::invalid(&path, "listed outside its input folder")))?;
                    continue;
                };
                if let Err(err) = check_local_name(e.path()) {
                    Listing::Failed(e.path().to_path_buf(), err)
                } else if e.file_type().is_symlink() {
                    Listing::Skipped(e.path().to_path_buf(), "a symbolic link (--no-follow-symlinks)")
                } else if !e.file_type().is_file() {
                    let reason = format!("not a regular file ({}); refused", file_kind(&e.file_type()));
                    Listing::Failed(e.path().to_path_buf(), Error::invalid(e.path(), reason))
                } else {
                    match e.metadata() {
                        Ok(m) => Listing::File(Entry::local(e.path().to_path_buf(), &root.join(&relative), relative, m.len())),
                        Err(err) => Listing::Failed(e.path().to_path_buf(), Error::invalid(e.path(), err.to_string())),
                    }
                }
            }
            Err(err) => {
                found += 1;
                let path = err.path().unwrap_or(input).to_path_buf();
                let cause = match (err.loop_ancestor(), err.io_error()) {
                    (Some(ancestor), _) => format!("a symbolic link loop (it leads back to {})", ancestor.display()),
                    (None, Some(e)) if e.kind() == std::io::ErrorKind::NotFound => "a broken symbolic link (its target does not exist)".to_string(),
                    (None, Some(e)) => e.to_string(),
                    (None, None) => err.to_string(),
                };
                Listing::Failed(path.clone(), Error::invalid(&path, format!("cannot list: {cause}")))
            }
        };
        each(item)?;
    }
    if found == 0 {
        return each(Listing::Failed(input.to_path_buf(), Error::invalid(input, "no files under this folder")));
    }
    ControlFlow::Continue(())
}

/// Whether `relative` is a non-empty path with only normal components
/// (no `..`, no root), safe to join below an output folder or prefix.
pub(crate) fn safe_relative(relative: &Path) -> bool {
    relative.components().next().is_some() && relative.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Why a folder marker is left out: the same words for prefix, list and inventory inputs.
pub(crate) const FOLDER_MARKER: &str = "folder marker (a key ending in /): nothing to encrypt";

/// Whether the object URL `name` is a folder marker (a key ending in `/`,
/// as the S3 console makes them).
pub(crate) fn is_folder_marker(name: &str) -> bool {
    S3Url::split(name).is_ok_and(|(_, key)| key.ends_with('/'))
}

/// The output path of a list entry: an `s3://bucket/key` keeps its key byte
/// for byte (`//` and a leading `/` included: S3 keys are names), a local
/// path its components without the root (`/archive/a.ts` → `archive/a.ts`).
fn relative_of(name: &str) -> PathBuf {
    match S3Url::split(S3Url::split_version(name).0) {
        Ok((_, key)) => PathBuf::from(key),
        Err(_) if S3Url::is_s3(name) => PathBuf::new(), // `s3:///…`: refused when the list is read
        Err(_) => Path::new(name).components().filter(|c| matches!(c, Component::Normal(_))).collect(),
    }
}

/// One named entry (from a list file or an inventory) as a listing.
fn entry(name: &str, size: Option<u64>, etag: Option<String>, archived_class: Option<&str>, origin: &Path, stores: &Stores) -> Listing {
    let source = PathBuf::from(name);
    let relative = relative_of(name);
    if S3Url::is_s3(name) {
        if is_folder_marker(name) {
            return Listing::Skipped(source, FOLDER_MARKER);
        }
        if relative.as_os_str().is_empty() {
            return Listing::Failed(source.clone(), Error::invalid(&source, "the name does not make a safe relative output path"));
        }
    } else if !safe_relative(&relative) || Path::new(name).components().any(|c| c == Component::ParentDir) {
        return Listing::Failed(source.clone(), Error::invalid(&source, "the name does not make a safe relative output path"));
    }
    let remote = stores.remote(name);
    let refused = match &remote {
        Ok(Some(store)) => store.refuses_name(name),
        _ => None,
    };
    match (remote, refused) {
        (Ok(Some(_)), Some(reason)) => {
            let shown = PathBuf::from(shortened(name));
            Listing::Failed(shown.clone(), Error::invalid(&shown, reason))
        }
        (Ok(Some(store)), None) => {
            let (url, version) = S3Url::split_version(name);
            let listed = match (size, etag, archived_class) {
                (Some(size), Some(etag), None) => {
                    Ok(Listed { url: url.to_string(), relative, size, etag, archived: None, version_id: version.map(str::to_string) })
                }
                // Without both, one HEAD request gives the size and the ETag to pin reads to;
                // an archived class, whether it is restored.
                _ => store.stat(name).map(|l| Listed { relative, ..l }),
            };
            match listed {
                Ok(item) if item.archived.is_some() => Listing::Archived(item),
                Ok(item) => Listing::File(Entry::remote(item)),
                Err(e) => Listing::Failed(source.clone(), e.for_file(&source)),
            }
        }
        (Err(e), _) => Listing::Failed(source.clone(), Error::invalid(origin, e.to_string())),
        (Ok(None), _) => match std::fs::metadata(&source) {
            Ok(m) if m.is_file() => Listing::File(Entry::local(source.clone(), &resolve(&source), relative, m.len())),
            Ok(m) => {
                let reason = format!("not a regular file ({}); refused", crate::store::local::file_kind(&m.file_type()));
                Listing::Failed(source.clone(), Error::invalid(&source, reason))
            }
            Err(e) => Listing::Failed(source.clone(), Error::io(&source, "open", e)),
        },
    }
}

/// List the entries of the list file `path` (`-` for standard input).
fn list_file(path: &Path, stores: &Stores, each: &mut dyn FnMut(Listing) -> ControlFlow<()>) -> ControlFlow<()> {
    let reader: Box<dyn std::io::BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(path) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => return each(Listing::Failed(path.to_path_buf(), Error::io(path, "open list file", e))),
        }
    };
    let mut flow = ControlFlow::Continue(());
    let read = super::inputs::read_list(reader, path, &mut |named| hand_over(named, path, stores, each, &mut flow));
    if matches!(read, Ok(0)) && flow.is_continue() {
        return each(Listing::Failed(path.to_path_buf(), Error::invalid(path, "the list names no files")));
    }
    ended(path, read.map(|_| ()), flow, each)
}

/// Hand one named entry to `each` as a listing; an `Err` stops the reader when `each` breaks.
fn hand_over(
    named: super::inputs::Named,
    origin: &Path,
    stores: &Stores,
    each: &mut dyn FnMut(Listing) -> ControlFlow<()>,
    flow: &mut ControlFlow<()>,
) -> crate::Result<()> {
    *flow = each(entry(&named.name, named.size, named.etag, named.archived_class.as_deref(), origin, stores));
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
fn inventory(path: &Path, stores: &Stores, each: &mut dyn FnMut(Listing) -> ControlFlow<()>) -> ControlFlow<()> {
    let text = path.to_string_lossy();
    let open = |name: &str| -> crate::Result<Box<dyn std::io::Read + Send>> {
        match stores.remote(name)? {
            Some(store) => store.fetch(name),
            None => std::fs::File::open(name).map(|f| Box::new(f) as Box<dyn std::io::Read + Send>).map_err(|e| Error::io(Path::new(name), "open inventory", e)),
        }
    };
    let mut flow = ControlFlow::Continue(());
    let mut rows = |name: &str, schema: Option<&[String]>, flow: &mut ControlFlow<()>| -> crate::Result<()> {
        let origin = PathBuf::from(name);
        let reader = open(name)?;
        super::inputs::read_inventory_csv_gz(reader, &origin, schema, &mut |named| hand_over(named, &origin, stores, &mut *each, flow)).map(|_| ())
    };
    let result = if text.ends_with(".json") {
        (|| -> crate::Result<()> {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut open(&text)?, &mut bytes).map_err(|e| Error::io(path, "read inventory manifest", e))?;
            let manifest = super::inputs::parse_inventory_manifest(&bytes, path)?;
            // Data files sit beside manifest.json when it is local, in the destination bucket otherwise.
            for file in &manifest.files {
                let name = match S3Url::is_s3(&text) {
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
