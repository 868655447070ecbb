//! Where a job's manifest is, and reading one wherever it is: the policy
//! every command shares, so the CLI only passes flags in.
//!
//! * [`locate`]: encrypt's manifest: `--manifest` (a path, or a store URL
//!   such as `s3://bucket/run.jsonl`), else `OUT/manifest.jsonl`, else for
//!   `--to PREFIX` a file named after the prefix in the state folder
//!   ([`named_after`]); each shard of a sharded run has its own
//!   ([`shard_path`], [`shard_url`]);
//! * [`fetch`]: the local working copy of a manifest in a store (a run's
//!   copy in the state folder, a read-only one in the temporary folder);
//! * [`read`], [`read_lines`]: a manifest's records, local or in a store;
//! * [`record_for`]: the record of one file, for `decrypt`;
//! * [`jobs_ledger`]: where `jobs --submit` keeps the jobs it sent.
//!
//! Nothing here reads the environment: the caller names the folders ([`Folders`]).

use std::path::{Path, PathBuf};

use super::shard::Shard;
use crate::error::{Error, Result};
use crate::format::record::{self, BadLine, Record};
use crate::store::{ManifestCopy, Stores};

/// The folders manifests' copies live in, named by the caller.
#[derive(Clone, Debug)]
pub struct Folders {
    /// A folder that outlives a reboot (`$XDG_STATE_HOME/sealpipe`): default
    /// manifests, a run's working copy of a remote manifest, jobs ledgers.
    pub state: PathBuf,
    /// A folder for read-only copies that nothing resumes from.
    pub temp: PathBuf,
}

/// Whether `path` is a store URL (`s3://…`) rather than a local path.
pub fn is_url(path: &Path) -> bool {
    Stores::is_url(&path.to_string_lossy())
}

/// Where a run's manifest is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// A local file (the manifest itself).
    Local(PathBuf),
    /// An object in a store, worked on as a local copy ([`fetch`]).
    Remote(String),
}

/// The manifest [`locate`] found, and whether it is the default for `--to`.
#[derive(Clone, Debug)]
pub struct Located {
    /// Where it is.
    pub place: Place,
    /// It is the default for this destination prefix (the caller says so once the run starts).
    pub default_for: Option<String>,
}

/// The manifest of an encrypt run: `manifest` (a path or URL), else
/// `out/manifest.jsonl`, else, for the destination `to`, the file
/// [`named_after`] it in `folders.state`; this shard's own when `shard` is
/// given. A URL that names no object is refused.
pub fn locate(stores: &Stores, manifest: Option<&Path>, out: Option<&Path>, to: Option<&str>, shard: Option<Shard>, folders: &Folders) -> Result<Located> {
    if let Some(m) = manifest.filter(|m| is_url(m)) {
        let url = shard_url(&m.to_string_lossy(), shard);
        let store = stores.remote(&url)?.ok_or_else(|| Error::Usage(format!("{url}: not a URL")))?;
        ManifestCopy::check_url(store, &url)?;
        return Ok(Located { place: Place::Remote(url), default_for: None });
    }
    let (path, default_for) = match (manifest, out, to) {
        (Some(m), ..) => (m.to_path_buf(), None),
        (None, Some(out), _) => (out.join("manifest.jsonl"), None),
        (None, None, Some(to)) => (named_after(&folders.state, to), Some(to.to_string())),
        (None, None, None) => (PathBuf::from("manifest.jsonl"), None),
    };
    Ok(Located { place: Place::Local(shard_path(&path, shard)), default_for })
}

/// The manifest named after the destination `to` (`s3://bucket/prefix/`):
/// `state/bucket_prefix.jsonl` (the folder is created). The name is
/// one-to-one with the URL's path segments: `_` joins them, and any other
/// byte than `A-Za-z0-9-.=` is written `%XX`, so `s3://a/b_c/` and
/// `s3://a/b/c/` never share a manifest (a ledger).
pub fn named_after(state: &Path, to: &str) -> PathBuf {
    let name: String = to
        .split_once("://")
        .map_or(to, |(_, rest)| rest)
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b"-.=".contains(&b) { char::from(b).to_string() } else { format!("%{b:02X}") })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("_");
    let _ = std::fs::create_dir_all(state);
    state.join(format!("{}.jsonl", if name.is_empty() { "run" } else { &name }))
}

/// The manifest path of one shard: `{shard}` replaced, or `.shard-I-of-N` before the extension.
pub fn shard_path(path: &Path, shard: Option<Shard>) -> PathBuf {
    let Some(shard) = shard else { return path.to_path_buf() };
    let tag = shard_tag(shard);
    let text = path.to_string_lossy();
    if text.contains("{shard}") {
        return PathBuf::from(text.replace("{shard}", &tag));
    }
    match (path.file_stem(), path.extension()) {
        (Some(stem), Some(ext)) => path.with_file_name(format!("{}.{tag}.{}", stem.to_string_lossy(), ext.to_string_lossy())),
        _ => PathBuf::from(format!("{text}.{tag}")),
    }
}

/// [`shard_path`] for a manifest URL: the key's last segment gets the
/// tag (the key is kept byte for byte otherwise, `//` included).
pub fn shard_url(url: &str, shard: Option<Shard>) -> String {
    let Some(shard) = shard else { return url.to_string() };
    let tag = shard_tag(shard);
    if url.contains("{shard}") {
        return url.replace("{shard}", &tag);
    }
    let name_at = url.rfind('/').map_or(0, |i| i + 1);
    match url[name_at..].rfind('.').filter(|&dot| dot > 0) {
        Some(dot) => format!("{}.{tag}{}", &url[..name_at + dot], &url[name_at + dot..]),
        None => format!("{url}.{tag}"),
    }
}

fn shard_tag(shard: Shard) -> String {
    format!("shard-{}-of-{}", shard.index, shard.count)
}

/// The local working copy of the manifest at `url` (see [`ManifestCopy`]):
/// a run's (`appending`) in the state folder, which outlives a reboot, so
/// a run killed before writing it back resumes from it; a read-only one in
/// the temporary folder.
pub fn fetch<'s>(stores: &'s Stores, url: &str, appending: bool, folders: &Folders) -> Result<ManifestCopy<'s>> {
    let store = stores.remote(url)?.ok_or_else(|| Error::Usage(format!("{url}: not a URL")))?;
    let work = if appending { &folders.state } else { &folders.temp };
    ManifestCopy::fetch(store, url, appending, work)
}

/// The records of a local manifest, or of one in a store (downloaded first).
pub fn read(stores: &Stores, manifest: &Path, folders: &Folders) -> Result<Vec<Record>> {
    with_local(stores, manifest, folders, record::read)
}

/// The records of a manifest, and its lines that are not records (torn or unparsable).
pub fn read_lines(stores: &Stores, manifest: &Path, folders: &Folders) -> Result<(Vec<Record>, Vec<BadLine>)> {
    with_local(stores, manifest, folders, record::read_all)
}

/// `f` over the manifest's local file (a copy of a remote one, named in its errors by its URL).
fn with_local<T>(stores: &Stores, manifest: &Path, folders: &Folders, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    if !is_url(manifest) {
        return f(manifest);
    }
    let copy = fetch(stores, &manifest.to_string_lossy(), false, folders)?;
    f(&copy.local).map_err(|e| Error::invalid(Path::new(&copy.url), e.to_string()))
}

/// The record of the encrypted file `input` in `manifest`: the last one
/// whose output is it (outputs recorded below a local manifest's folder
/// are looked for below it, wherever it is now), or whose MediaConvert
/// `FileInput` is it.
pub fn record_for(stores: &Stores, manifest: &Path, input: &Path, folders: &Folders) -> Result<Record> {
    let mut records = read(stores, manifest, folders)?;
    if !is_url(manifest) {
        let _ = super::verify::relocate(&mut records, manifest);
    }
    let wanted = crate::store::local::resolve(input);
    let input_text = input.to_string_lossy();
    let at = records.iter().rposition(|r| {
        crate::store::local::resolve(Path::new(&r.output)) == wanted || r.mediaconvert.as_ref().is_some_and(|mc| mc.file_input == input_text)
    });
    match at {
        Some(i) => Ok(records.swap_remove(i)),
        None => Err(Error::Usage(format!("{}: no record for this file in manifest {}", input.display(), manifest.display()))),
    }
}

/// The jobs ledger of `jobs --submit` for `manifest`: `<manifest>.jobs.jsonl`
/// beside a local one; for one in a store, named after its URL in the state folder.
pub fn jobs_ledger(manifest: &Path, folders: &Folders) -> PathBuf {
    if is_url(manifest) {
        return named_after(&folders.state, &manifest.to_string_lossy()).with_extension("jobs.jsonl");
    }
    let mut name = manifest.as_os_str().to_owned();
    name.push(".jobs.jsonl");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(url: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        named_after(dir.path(), url).file_name().unwrap().to_string_lossy().into_owned()
    }

    #[test]
    fn default_manifest_names_are_one_to_one_with_the_url() {
        assert_eq!(name("s3://media-in/2019/"), "media-in_2019.jsonl");
        assert_eq!(name("s3://media-in/2019"), "media-in_2019.jsonl", "a trailing slash names the same prefix");
        assert_ne!(name("s3://a/b_c/"), name("s3://a/b/c/"));
        assert_ne!(name("s3://a/b c/"), name("s3://a/b_c/"));
        assert_eq!(name("s3://a/b_c/"), "a_b%5Fc.jsonl");
        assert_eq!(name("s3://a/été/"), "a_%C3%A9t%C3%A9.jsonl");
    }

    #[test]
    fn each_shard_has_its_own_manifest() {
        let s = Some(Shard::parse("2/4").unwrap());
        assert_eq!(shard_path(Path::new("runs/a.jsonl"), s), Path::new("runs/a.shard-2-of-4.jsonl"));
        assert_eq!(shard_path(Path::new("runs/{shard}/m"), s), Path::new("runs/shard-2-of-4/m"));
        assert_eq!(shard_url("s3://b/runs//a.jsonl", s), "s3://b/runs//a.shard-2-of-4.jsonl");
        assert_eq!(shard_url("s3://b/runs/a", s), "s3://b/runs/a.shard-2-of-4");
        assert_eq!(shard_url("s3://b/runs/a.jsonl", None), "s3://b/runs/a.jsonl");
    }
}
