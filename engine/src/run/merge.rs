//! Joining the manifests of sharded runs (`--shard I/N`) into one manifest
//! with one record per source, and reporting what does not add up:
//! sources encrypted more than once, outputs claimed by two sources, shards
//! that contributed nothing, and expected sources with no record.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use super::manifest::relative_to_folder;
use crate::store::local::{resolve, Output};
use crate::store::Sink;
use crate::format::record::{for_each_jsonl_line, Record};

/// The most shards a label may declare (`I/N` with `N` up to this).
pub const MAX_SHARDS: u32 = 1 << 16;

/// Merged output is handed to the file in pieces of about this size.
const WRITE_BUFFER: usize = 1 << 20;

/// What a merge found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MergeReport {
    /// Manifests read.
    pub manifests: usize,
    /// Records read, over all manifests.
    pub records_read: u64,
    /// Records in the merged manifest (one per source), or that it would
    /// hold when no output was asked for.
    pub records_written: u64,
    /// Sources with several records, and outputs claimed by several sources.
    pub duplicates: Vec<Duplicate>,
    /// Shards with no records (`shard 3/8: no records`), then expected
    /// sources with no record (`/archive/a.mp4: no record`).
    pub gaps: Vec<String>,
    /// The shard count `N` when records carry `I/N` labels.
    pub shards: Option<u32>,
}

impl MergeReport {
    /// Whether the merge found neither duplicates nor gaps.
    pub fn is_clean(&self) -> bool {
        self.duplicates.is_empty() && self.gaps.is_empty()
    }
}

/// What a [`Duplicate`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DuplicateKind {
    /// One source has several records; the newest is kept.
    Source,
    /// Several sources name the same output; every one of them is kept.
    Output,
}

/// A source with more than one record, or an output more than one source claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    /// Whether `name` is a source or an output.
    pub kind: DuplicateKind,
    /// The source (or output) concerned.
    pub name: String,
    /// `path:line` of each record concerned, in reading order.
    pub places: Vec<String>,
    /// For a source, `path:line` of the record kept (the latest
    /// `finished_unix`; on a tie the one read last).
    pub kept: Option<String>,
}

/// Where a record is: manifest index (in the order given) and line (from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Loc {
    manifest: u32,
    line: u64,
}

/// What is known about one source after the first pass.
struct Entry {
    kept: Loc,
    finished: u64,
    /// The source's other records (superseded), in reading order.
    others: Vec<Loc>,
}

/// State gathered while reading the manifests.
#[derive(Default)]
struct Join {
    sources: HashMap<Rc<str>, Entry>,
    /// Each output, with the first source (and record) that named it.
    outputs: HashMap<Box<str>, (Rc<str>, Loc)>,
    /// Outputs named by more than one source, with every record naming them since.
    clashes: HashMap<Box<str>, Vec<Loc>>,
    /// The shard count and the record that first declared it.
    shard_count: Option<(u32, Loc)>,
    shards_seen: BTreeSet<u32>,
    records: u64,
}

/// Join `manifests` (JSON Lines of [`Record`]s) into one, keeping one record
/// per source: the one with the latest `finished_unix`, and on a tie the one
/// read last (later manifest, later line). Kept lines are copied verbatim,
/// in reading order.
///
/// With `out`, the merged manifest is written atomically (a temporary file
/// in the same folder, synced, then renamed); an existing `out` is refused
/// unless `overwrite`. Without it, nothing is written and the report says
/// what would be.
///
/// The report lists sources with several records and outputs claimed by
/// several sources ([`Duplicate`]), and gaps: with `I/N` shard labels, every
/// shard index in `0..N` that contributed no record; with `expected` (the
/// source names the run should have covered), every one with no record.
/// Labels that disagree on `N`, or are malformed, are an error, as is any
/// line that is not a record (named by `path: line N`).
///
/// Memory: this is an offline join, not a streaming pass. It holds every
/// distinct source and output name and where their records are (a few
/// hundred bytes per file), and reads each manifest twice when writing.
/// `expected` is consumed as it is iterated.
pub fn merge(
    manifests: &[PathBuf],
    out: Option<&Path>,
    overwrite: bool,
    expected: Option<&mut dyn Iterator<Item = String>>,
) -> Result<MergeReport> {
    if manifests.is_empty() {
        return Err(Error::Usage("no manifests to merge".into()));
    }
    if u32::try_from(manifests.len()).is_err() {
        return Err(Error::Usage(format!("too many manifests to merge ({})", manifests.len())));
    }
    // Made first, so an existing output is refused before any reading.
    let output = out.map(|path| Output::create(path, overwrite)).transpose()?;
    let mut join = Join::default();
    for (m, path) in manifests.iter().enumerate() {
        for_each_line(path, &mut |line, text| {
            let record = Record::from_json(text)
                .map_err(|e| Error::invalid(path, format!("line {line}: not a sealpipe manifest record: {e}")))?;
            join.add(manifests, Loc { manifest: m as u32, line }, record)
        })?;
    }
    let report = join.report(manifests, expected);
    if let Some(mut output) = output {
        let written = copy_kept(manifests, &join.sources, out.expect("an output was made"), &mut output)?;
        if written != join.sources.len() as u64 {
            return Err(Error::invalid(
                out.expect("an output was made"),
                format!("the manifests changed while merging: {written} of {} records found again; nothing written", join.sources.len()),
            ));
        }
        output.sync()?;
        output.commit()?;
    }
    Ok(report)
}

impl Join {
    /// Take in one record found at `loc`.
    fn add(&mut self, manifests: &[PathBuf], loc: Loc, record: Record) -> Result<()> {
        self.records += 1;
        if let Some(label) = &record.shard {
            self.add_shard(manifests, loc, label)?;
        }
        let source: Rc<str> = match self.sources.get_key_value(record.source.as_str()) {
            Some((name, _)) => name.clone(),
            None => Rc::from(record.source.as_str()),
        };
        self.sources
            .entry(source.clone())
            .and_modify(|e| {
                if record.finished_unix >= e.finished {
                    e.others.push(e.kept);
                    e.kept = loc;
                    e.finished = record.finished_unix;
                } else {
                    e.others.push(loc);
                }
            })
            .or_insert(Entry { kept: loc, finished: record.finished_unix, others: Vec::new() });
        match self.outputs.get(record.output.as_str()) {
            Some((owner, first)) if *owner != source => {
                self.clashes.entry(record.output.into_boxed_str()).or_insert_with(|| vec![*first]).push(loc)
            }
            Some(_) => {
                if let Some(places) = self.clashes.get_mut(record.output.as_str()) {
                    places.push(loc);
                }
            }
            None => {
                self.outputs.insert(record.output.into_boxed_str(), (source, loc));
            }
        }
        Ok(())
    }

    /// Check one `I/N` label against the others and note its shard.
    fn add_shard(&mut self, manifests: &[PathBuf], loc: Loc, label: &str) -> Result<()> {
        let at = |reason: String| Error::invalid(&manifests[loc.manifest as usize], format!("line {}: {reason}", loc.line));
        let (index, count) = parse_shard(label).map_err(at)?;
        match self.shard_count {
            None => self.shard_count = Some((count, loc)),
            Some((n, first)) if n != count => {
                return Err(at(format!(
                    "shard {label} does not match the {n} shards of {} (manifests of different runs?)",
                    place(manifests, first)
                )))
            }
            Some(_) => {}
        }
        self.shards_seen.insert(index);
        Ok(())
    }

    /// The report, with the expected sources compared against those seen.
    fn report(&self, manifests: &[PathBuf], expected: Option<&mut dyn Iterator<Item = String>>) -> MergeReport {
        let mut duplicates: Vec<(Loc, Duplicate)> = Vec::new();
        for (name, entry) in self.sources.iter().filter(|(_, e)| !e.others.is_empty()) {
            let mut locs: Vec<Loc> = entry.others.iter().copied().chain([entry.kept]).collect();
            locs.sort();
            duplicates.push((
                locs[0],
                Duplicate {
                    kind: DuplicateKind::Source,
                    name: name.to_string(),
                    places: locs.iter().map(|&l| place(manifests, l)).collect(),
                    kept: Some(place(manifests, entry.kept)),
                },
            ));
        }
        for (name, locs) in &self.clashes {
            let mut locs = locs.clone();
            locs.sort();
            duplicates.push((
                locs[0],
                Duplicate {
                    kind: DuplicateKind::Output,
                    name: name.to_string(),
                    places: locs.iter().map(|&l| place(manifests, l)).collect(),
                    kept: None,
                },
            ));
        }
        duplicates.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.name.cmp(&b.1.name)));
        let mut gaps = Vec::new();
        if let Some((n, _)) = self.shard_count {
            gaps.extend((0..n).filter(|i| !self.shards_seen.contains(i)).map(|i| format!("shard {i}/{n}: no records")));
        }
        if let Some(expected) = expected {
            gaps.extend(expected.filter(|name| !self.sources.contains_key(name.as_str())).map(|name| format!("{name}: no record")));
        }
        MergeReport {
            manifests: manifests.len(),
            records_read: self.records,
            records_written: self.sources.len() as u64,
            duplicates: duplicates.into_iter().map(|(_, d)| d).collect(),
            gaps,
            shards: self.shard_count.map(|(n, _)| n),
        }
    }
}

/// Parse a shard label `I/N` (`0 <= I < N <= MAX_SHARDS`).
fn parse_shard(label: &str) -> Result<(u32, u32), String> {
    let bad = || format!("shard label {label:?} is not I/N with 0 <= I < N <= {MAX_SHARDS}");
    let (i, n) = label.split_once('/').ok_or_else(bad)?;
    let (i, n) = (i.trim().parse::<u32>().map_err(|_| bad())?, n.trim().parse::<u32>().map_err(|_| bad())?);
    if n == 0 || i >= n || n > MAX_SHARDS {
        return Err(bad());
    }
    Ok((i, n))
}

/// `path:line` of a record.
fn place(manifests: &[PathBuf], loc: Loc) -> String {
    format!("{}:{}", manifests[loc.manifest as usize].display(), loc.line)
}

/// Call `each` with the number (from 1) and text of every non-blank line of
/// `path` (read by the manifests' one reader); a line that is not UTF-8 fails the merge.
fn for_each_line(path: &Path, each: &mut dyn FnMut(u64, &str) -> Result<()>) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io(path, "open manifest", e))?;
    for_each_jsonl_line(file, path, &mut |line, bytes| {
        let text = std::str::from_utf8(bytes).map_err(|_| Error::invalid(path, format!("line {line}: not valid UTF-8")))?;
        each(line as u64, text.trim())
    })
}

/// Just the source of a record, for the second pass.
#[derive(Deserialize)]
struct SourceOnly {
    source: String,
}

/// Second pass: copy each kept record's line to `output` (the merged
/// manifest at `out`). Returns how many. Lines are copied verbatim, except
/// a record whose output it names relative to its manifest's folder
/// ([`Record::output_relative`]) when the merged manifest is in another
/// folder: its output is then said again, from the new folder (or absolute).
fn copy_kept(manifests: &[PathBuf], sources: &HashMap<Rc<str>, Entry>, out: &Path, output: &mut Output) -> Result<u64> {
    let mut buf = Vec::with_capacity(WRITE_BUFFER + (64 << 10));
    let mut written = 0u64;
    let folder = |manifest: &Path| resolve(manifest).parent().map(Path::to_path_buf);
    let out_folder = folder(out);
    for (m, path) in manifests.iter().enumerate() {
        let moved = folder(path) != out_folder;
        for_each_line(path, &mut |line, text| {
            let changed = || Error::invalid(path, format!("line {line}: changed while merging"));
            let record: SourceOnly = serde_json::from_str(text).map_err(|_| changed())?;
            let entry = sources.get(record.source.as_str()).ok_or_else(changed)?;
            if entry.kept == (Loc { manifest: m as u32, line }) {
                match Record::from_json(text) {
                    Ok(mut r) if moved && r.output_relative.is_some() => {
                        // Beside the manifest read when it is there (the folder moved with it), else where recorded.
                        let folder = resolve(path).parent().map(Path::to_path_buf).unwrap_or_default();
                        let beside = folder.join(r.output_relative.as_deref().unwrap_or_default());
                        if beside.exists() {
                            r.output = beside.display().to_string();
                        }
                        r.output_relative = out_folder.as_deref().and_then(|f| relative_to_folder(f, &r.output));
                        buf.extend(serde_json::to_vec(&r).expect("records serialize"));
                    }
                    _ => buf.extend_from_slice(text.as_bytes()),
                }
                buf.push(b'\n');
                written += 1;
                if buf.len() >= WRITE_BUFFER {
                    output.write(&buf)?;
                    buf.clear();
                }
            }
            Ok(())
        })?;
    }
    output.write(&buf)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// One manifest line with the whole field set of a real record.
    fn line(source: &str, output: &str, finished: u64, shard: Option<&str>) -> String {
        let mut v = serde_json::json!({
            "source": source,
            "output": output,
            "plaintext_size": 1000,
            "ciphertext_size": 1000,
            "mode": "ctr",
            "key_bits": 256,
            "key_provider": "local-keyring",
            "key_id": "local:0123456789abcdef",
            "key_source": "generated",
            "target": "mediaconvert",
            "encryption_context": {"service": "mediaconvert.amazonaws.com"},
            "encrypted_data_key": "AAAA",
            "iv": "AAAAAAAAAAAAAAAA",
            "key_md5": "AAAAAAAAAAAAAAAAAAAAAA==",
            "plaintext_sha256": "00".repeat(32),
            "finished_unix": finished,
        });
        if let Some(s) = shard {
            v["shard"] = s.into();
        }
        let text = v.to_string();
        serde_json::from_str::<Record>(&text).expect("the test record is a valid Record");
        text
    }

    fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        path
    }

    fn read_lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
    }

    #[test]
    fn two_shard_manifests_merge_into_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = [line("/src/a", "/out/a", 10, Some("0/2")), line("/src/b", "/out/b", 11, Some("0/2"))];
        let b = [line("s3://in/c", "s3://out/c", 12, Some("1/2")), line("s3://in/d", "s3://out/d", 13, Some("1/2"))];
        let m0 = write(dir.path(), "m0.jsonl", &a);
        let m1 = write(dir.path(), "m1.jsonl", &b);
        let out = dir.path().join("merged").join("all.jsonl");
        let report = merge(&[m0, m1], Some(&out), false, None).unwrap();
        assert_eq!(
            report,
            MergeReport { manifests: 2, records_read: 4, records_written: 4, duplicates: vec![], gaps: vec![], shards: Some(2) }
        );
        assert!(report.is_clean());
        assert_eq!(read_lines(&out), [&a[..], &b[..]].concat(), "kept lines are copied verbatim, in order");
        let names: Vec<_> = fs::read_dir(out.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["all.jsonl"], "no temporary file is left");
    }

    #[test]
    fn duplicate_across_manifests_resolves_to_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let newest = line("/src/a", "/out2/a", 200, None);
        let m0 = write(dir.path(), "m0.jsonl", &[line("/src/a", "/out/a", 100, None), line("/src/b", "/out/b", 5, None)]);
        let m1 = write(dir.path(), "m1.jsonl", &[newest.clone(), line("/src/b", "/out/b", 5, None)]);
        let m2 = write(dir.path(), "m2.jsonl", &[line("/src/a", "/out3/a", 150, None)]);
        let out = dir.path().join("out.jsonl");
        let report = merge(&[m0.clone(), m1.clone(), m2.clone()], Some(&out), false, None).unwrap();
        let at = |p: &Path, l: u64| format!("{}:{l}", p.display());
        assert_eq!(
            report.duplicates,
            [
                Duplicate {
                    kind: DuplicateKind::Source,
                    name: "/src/a".into(),
                    places: vec![at(&m0, 1), at(&m1, 1), at(&m2, 1)],
                    kept: Some(at(&m1, 1)),
                },
                // A tie in finished_unix keeps the record read last.
                Duplicate {
                    kind: DuplicateKind::Source,
                    name: "/src/b".into(),
                    places: vec![at(&m0, 2), at(&m1, 2)],
                    kept: Some(at(&m1, 2))
                },
            ]
        );
        assert_eq!((report.records_read, report.records_written, report.shards), (5, 2, None));
        assert_eq!(read_lines(&out), [newest, line("/src/b", "/out/b", 5, None)]);
    }

    #[test]
    fn two_sources_claiming_one_output_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let m0 = write(dir.path(), "m0.jsonl", &[line("/x/clip.mp4", "/out/clip.mp4", 1, None)]);
        let m1 = write(dir.path(), "m1.jsonl", &[line("/other", "/out/o", 1, None), line("/y/clip.mp4", "/out/clip.mp4", 2, None)]);
        let report = merge(&[m0.clone(), m1.clone()], None, false, None).unwrap();
        assert_eq!(
            report.duplicates,
            [Duplicate {
                kind: DuplicateKind::Output,
                name: "/out/clip.mp4".into(),
                places: vec![format!("{}:1", m0.display()), format!("{}:2", m1.display())],
                kept: None,
            }]
        );
        assert_eq!(report.records_written, 3, "both sources keep their record");
        assert!(!report.is_clean());
    }

    #[test]
    fn missing_shards_are_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let m0 = write(dir.path(), "s0.jsonl", &[line("/a", "/o/a", 1, Some("0/4"))]);
        let m2 = write(dir.path(), "s2.jsonl", &[line("/c", "/o/c", 1, Some("2/4"))]);
        let report = merge(&[m0, m2], None, false, None).unwrap();
        assert_eq!(report.gaps, ["shard 1/4: no records", "shard 3/4: no records"]);
        assert_eq!(report.shards, Some(4));
    }

    #[test]
    fn shard_labels_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let m0 = write(dir.path(), "s0.jsonl", &[line("/a", "/o/a", 1, Some("0/8"))]);
        let m1 = write(dir.path(), "s1.jsonl", &[line("/b", "/o/b", 1, Some("1/8")), line("/c", "/o/c", 1, Some("1/4"))]);
        let err = merge(&[m0.clone(), m1.clone()], None, false, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: line 2: shard 1/4 does not match the 8 shards of {}:1 (manifests of different runs?)", m1.display(), m0.display())
        );
        let bad = write(dir.path(), "bad.jsonl", &[line("/a", "/o/a", 1, Some("4/4"))]);
        let err = merge(std::slice::from_ref(&bad), None, false, None).unwrap_err();
        assert_eq!(err.to_string(), format!("{}: line 1: shard label \"4/4\" is not I/N with 0 <= I < N <= 65536", bad.display()));
    }

    #[test]
    fn expected_sources_without_records_are_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let m0 = write(dir.path(), "m.jsonl", &[line("/a", "/o/a", 1, None), line("s3://in/b", "s3://out/b", 1, None)]);
        let mut expected = ["/a", "s3://in/b", "/missing one", "s3://in/c"].into_iter().map(String::from);
        let report = merge(&[m0], None, false, Some(&mut expected)).unwrap();
        assert_eq!(report.gaps, ["/missing one: no record", "s3://in/c: no record"]);
        assert!(report.duplicates.is_empty());
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let m0 = write(dir.path(), "ok.jsonl", &[line("/a", "/o/a", 1, None)]);
        let m1 = dir.path().join("bad.jsonl");
        fs::write(&m1, format!("{}\n\n{{\"source\": \"/c\"}}\n", line("/b", "/o/b", 1, None))).unwrap();
        let out = dir.path().join("out.jsonl");
        let err = merge(&[m0, m1.clone()], Some(&out), false, None).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(&format!("{}: line 3: not a sealpipe manifest record: missing field", m1.display())), "{text}");
        assert!(!out.exists(), "nothing is written after an error");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file is left");
        let err = merge(&[dir.path().join("absent.jsonl")], None, false, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: cannot open manifest: no such file or directory", dir.path().join("absent.jsonl").display())
        );
    }

    #[test]
    fn refuses_an_existing_output_unless_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let record = line("/a", "/o/a", 1, None);
        let m0 = write(dir.path(), "m.jsonl", std::slice::from_ref(&record));
        let out = dir.path().join("out.jsonl");
        fs::write(&out, "keep me\n").unwrap();
        let err = merge(std::slice::from_ref(&m0), Some(&out), false, None).unwrap_err();
        assert!(matches!(err, Error::Exists { .. }), "{err}");
        assert_eq!(fs::read_to_string(&out).unwrap(), "keep me\n");
        merge(&[m0], Some(&out), true, None).unwrap();
        assert_eq!(read_lines(&out), [record]);
    }
}
