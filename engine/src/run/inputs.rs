//! Streaming readers for archive-scale input lists: plain list files (one
//! path or `s3://` URL per line) and S3 Inventory reports (`manifest.json`
//! plus its gzip-compressed CSV data files).
//!
//! Every reader hands each entry to a callback as soon as it is read and
//! keeps nothing, so memory stays the same for ten entries or a hundred
//! million. A callback that returns an error stops the reading; that error is
//! returned as is.

use std::borrow::Cow;
use std::io::{BufRead, Read};
use std::path::Path;

use percent_encoding::percent_decode_str;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::format::url::{S3Url, S3UrlError};

/// One object named by a list file or an inventory report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    /// A local path as written, or `s3://bucket/key`.
    pub name: String,
    /// Size in bytes, when the listing gives it.
    pub size: Option<u64>,
    /// Entity tag (without quotes), when the listing gives it.
    pub etag: Option<String>,
    /// Storage class (or Intelligent-Tiering access tier) when the listing
    /// says it is an archived one (`GLACIER`, `DEEP_ARCHIVE`,
    /// `ARCHIVE_ACCESS`, `DEEP_ARCHIVE_ACCESS`): its restore status is then asked.
    pub archived_class: Option<String>,
}

/// Read a list file: one local path or `s3://` URL per line. Blank lines and
/// lines starting with `#` are skipped, CRLF line ends are accepted, and
/// surrounding whitespace is trimmed (so a path cannot begin or end with
/// spaces). `origin` names the file in errors (`list.txt: line 7: ...`).
///
/// Returns the number of entries handed to `each`.
pub fn read_list(mut reader: impl BufRead, origin: &Path, each: &mut dyn FnMut(Named) -> Result<()>) -> Result<u64> {
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut count = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(|e| Error::io(origin, "read", e))? == 0 {
            return Ok(count);
        }
        number += 1;
        let text = std::str::from_utf8(&line).map_err(|_| Error::invalid(origin, format!("line {number}: not valid UTF-8")))?;
        // A byte-order mark, as some Windows editors write, is not part of the first path.
        let text = if number == 1 { text.trim_start_matches('\u{feff}') } else { text };
        let entry = text.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        check_list_entry(entry).map_err(|reason| Error::invalid(origin, format!("line {number}: {reason}")))?;
        each(Named { name: entry.to_string(), size: None, etag: None, archived_class: None })?;
        count += 1;
    }
}

/// Why a list entry can name no file, if it cannot.
fn check_list_entry(entry: &str) -> Result<(), String> {
    if entry.contains('\0') {
        return Err("contains a NUL character".into());
    }
    if S3Url::split(entry) == Err(S3UrlError::NoBucket) {
        return Err(format!("{entry:?} names no bucket (expected s3://bucket/key)"));
    }
    Ok(())
}

/// An S3 Inventory `manifest.json`, as S3 writes it next to the data files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryManifest {
    /// The bucket the inventory lists.
    pub source_bucket: String,
    /// Where the data files are, as written (`arn:aws:s3:::name`).
    pub destination_bucket: String,
    /// `CSV` (the only format read here), `ORC` or `Parquet`.
    pub file_format: String,
    /// Column names of the data files, in order (`Bucket`, `Key`, `Size`, ...).
    pub file_schema: Vec<String>,
    /// The data files (keys in the destination bucket).
    pub files: Vec<InventoryFile>,
}

/// One data file of an inventory report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryFile {
    /// Its key in the destination bucket.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Hex MD5 of the file as stored, when given.
    pub md5: Option<String>,
}

impl InventoryManifest {
    /// The destination bucket's name, without the `arn:aws:s3:::` prefix.
    pub fn destination_bucket_name(&self) -> &str {
        self.destination_bucket.strip_prefix("arn:aws:s3:::").unwrap_or(&self.destination_bucket)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    source_bucket: String,
    destination_bucket: String,
    file_format: String,
    file_schema: String,
    files: Vec<RawFile>,
}

#[derive(Deserialize)]
struct RawFile {
    key: String,
    size: u64,
    #[serde(rename = "MD5checksum", default)]
    md5: Option<String>,
}

/// Parse an S3 Inventory `manifest.json`. Only CSV inventories are accepted:
/// ORC and Parquet reports are refused with an error saying so. The schema
/// must name the `Bucket` and `Key` columns.
pub fn parse_inventory_manifest(bytes: &[u8], origin: &Path) -> Result<InventoryManifest> {
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| Error::invalid(origin, format!("not an S3 Inventory manifest.json: {e}")))?;
    if !raw.file_format.eq_ignore_ascii_case("CSV") {
        return Err(Error::invalid(
            origin,
            format!(
                "inventory format {} is not supported: only CSV inventory reports can be read (set the report's output format to CSV)",
                raw.file_format
            ),
        ));
    }
    let file_schema: Vec<String> = raw.file_schema.split(',').map(|c| c.trim().to_string()).collect();
    Columns::from_schema(&file_schema).map_err(|reason| Error::invalid(origin, reason))?;
    Ok(InventoryManifest {
        source_bucket: raw.source_bucket,
        destination_bucket: raw.destination_bucket,
        file_format: raw.file_format,
        file_schema,
        files: raw.files.into_iter().map(|f| InventoryFile { key: f.key, size: f.size, md5: f.md5 }).collect(),
    })
}

/// Where the columns read here are in an inventory row.
#[derive(Clone, Copy, Debug)]
struct Columns {
    bucket: usize,
    key: usize,
    size: Option<usize>,
    etag: Option<usize>,
    is_latest: Option<usize>,
    is_delete_marker: Option<usize>,
    storage_class: Option<usize>,
    tiering_tier: Option<usize>,
    version_id: Option<usize>,
    /// The exact number of columns a row must have (known with a schema);
    /// without one, rows need only reach the last column used.
    width: Option<usize>,
}

impl Columns {
    fn from_schema(schema: &[String]) -> Result<Columns, String> {
        let find = |name: &str| schema.iter().position(|c| c.trim().eq_ignore_ascii_case(name));
        let required =
            |name: &str| find(name).ok_or_else(|| format!("inventory schema has no {name} column (schema: {})", schema.join(", ")));
        Ok(Columns {
            bucket: required("Bucket")?,
            key: required("Key")?,
            size: find("Size"),
            etag: find("ETag"),
            is_latest: find("IsLatest"),
            is_delete_marker: find("IsDeleteMarker"),
            storage_class: find("StorageClass"),
            tiering_tier: find("IntelligentTieringAccessTier"),
            version_id: find("VersionId"),
            width: Some(schema.len()),
        })
    }

    /// Without a schema: `Bucket, Key`, then `Size` when the first row's third column is a number.
    fn detect(first: &csv::StringRecord) -> Columns {
        let size = first.get(2).filter(|s| s.parse::<u64>().is_ok()).map(|_| 2);
        Columns { bucket: 0, key: 1, size, etag: None, is_latest: None, is_delete_marker: None, storage_class: None, tiering_tier: None, version_id: None, width: None }
    }

    fn needed(&self) -> usize {
        [Some(self.bucket), Some(self.key), self.size, self.etag, self.is_latest, self.is_delete_marker]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0)
            + 1
    }
}

/// Read one S3 Inventory CSV data file, gzip-compressed as S3 writes it
/// (several gzip members are read as one stream; no header row).
///
/// `schema` is the manifest's `fileSchema` split into column names (see
/// [`InventoryManifest::file_schema`]); rows must then have exactly that
/// many columns. Without it the columns are taken to be `Bucket, Key`, then
/// `Size` when the first row's third column is a number.
///
/// Keys are URL-decoded as S3 Inventory encodes them (form encoding: a space
/// is written `+`, a `+` is written `%2B`). Rows that are delete markers
/// (`IsDeleteMarker` true) or older versions (`IsLatest` false) are skipped
/// when those columns exist. Each other row becomes
/// `Named { name: "s3://bucket/key", size, etag }`.
///
/// Errors name `origin` and the row (bad gzip, bad CSV, missing columns, bad
/// size); the rows before it have been handed to `each` by then. A file cut
/// exactly between two gzip members reads as complete: compare its length
/// or MD5 with the manifest's ([`InventoryFile`]) to catch that. Returns the
/// number of entries handed to `each`.
pub fn read_inventory_csv_gz(
    reader: impl Read,
    origin: &Path,
    schema: Option<&[String]>,
    each: &mut dyn FnMut(Named) -> Result<()>,
) -> Result<u64> {
    let mut columns = schema.map(Columns::from_schema).transpose().map_err(|reason| Error::invalid(origin, reason))?;
    let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(flate2::read::MultiGzDecoder::new(reader));
    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    let mut count = 0u64;
    loop {
        match csv.read_record(&mut record) {
            Ok(true) => row += 1,
            Ok(false) => return Ok(count),
            Err(e) => return Err(csv_error(origin, row + 1, e)),
        }
        let at_row = |reason: String| Error::invalid(origin, format!("row {row}: {reason}"));
        let cols = *columns.get_or_insert_with(|| Columns::detect(&record));
        match cols.width {
            Some(width) if record.len() != width => {
                return Err(at_row(format!("has {} columns, the inventory schema names {width}", record.len())))
            }
            None if record.len() < cols.needed() => {
                return Err(at_row(format!("has {} columns, expected at least {}", record.len(), cols.needed())))
            }
            _ => {}
        }
        if flag(&record, cols.is_delete_marker, "IsDeleteMarker").map_err(at_row)? == Some(true)
            || flag(&record, cols.is_latest, "IsLatest").map_err(at_row)? == Some(false)
        {
            continue;
        }
        let named = named(&record, &cols).map_err(at_row)?;
        each(named)?;
        count += 1;
    }
}

/// The entry a kept inventory row names.
fn named(record: &csv::StringRecord, cols: &Columns) -> Result<Named, String> {
    let bucket = &record[cols.bucket];
    if bucket.is_empty() {
        return Err("empty Bucket".into());
    }
    let key = decode_key(&record[cols.key])?;
    if key.is_empty() {
        return Err("empty Key".into());
    }
    let size = match cols.size.map(|i| &record[i]).filter(|s| !s.is_empty()) {
        Some(text) => Some(text.parse::<u64>().map_err(|_| format!("Size is {text:?}, not a number of bytes"))?),
        None => None,
    };
    let etag = cols.etag.map(|i| record[i].trim_matches('"')).filter(|t| !t.is_empty()).map(str::to_string);
    let column = |c: Option<usize>| c.map(|i| record[i].trim()).filter(|v| !v.is_empty());
    let archived_class = match (column(cols.storage_class), column(cols.tiering_tier)) {
        (_, Some(tier @ ("ARCHIVE_ACCESS" | "DEEP_ARCHIVE_ACCESS"))) => Some(tier.to_string()),
        (Some(class @ ("GLACIER" | "DEEP_ARCHIVE")), _) => Some(class.to_string()),
        _ => None,
    };
    // A versioned bucket's inventory names the version listed: exactly that one is read.
    // ("null": an object written before versioning was enabled; the latest row of one is read as is.)
    let version = column(cols.version_id).filter(|v| *v != "null").map(|v| format!("?versionId={v}")).unwrap_or_default();
    Ok(Named { name: format!("s3://{bucket}/{key}{version}"), size, etag, archived_class })
}

/// A `true`/`false` column (case-insensitive); `None` when absent or empty.
fn flag(record: &csv::StringRecord, column: Option<usize>, name: &str) -> Result<Option<bool>, String> {
    match column.map(|i| &record[i]) {
        None | Some("") => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(format!("{name} is {v:?}, expected true or false")),
    }
}

/// Decode a key as S3 Inventory writes it in CSV: URL form encoding of the
/// UTF-8 bytes, a space as `+` and `+` itself as `%2B`.
fn decode_key(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    for (i, _) in raw.match_indices('%') {
        if !bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            return Err(format!("Key {raw:?} has a malformed %-escape at byte {i}"));
        }
    }
    let spaced = if raw.contains('+') { Cow::Owned(raw.replace('+', " ")) } else { Cow::Borrowed(raw) };
    percent_decode_str(&spaced).decode_utf8().map(Cow::into_owned).map_err(|_| format!("Key {raw:?} is not UTF-8 once URL-decoded"))
}

/// A CSV reader error at `row`, with gzip damage told apart from I/O failures.
fn csv_error(origin: &Path, row: u64, e: csv::Error) -> Error {
    use std::io::ErrorKind;
    match e.kind() {
        csv::ErrorKind::Io(io) if matches!(io.kind(), ErrorKind::InvalidInput | ErrorKind::InvalidData | ErrorKind::UnexpectedEof) => {
            Error::invalid(origin, format!("row {row}: corrupt or truncated gzip data ({io})"))
        }
        csv::ErrorKind::Io(_) => match e.into_kind() {
            csv::ErrorKind::Io(io) => Error::io(origin, "read", io),
            _ => unreachable!("matched as an I/O error above"),
        },
        csv::ErrorKind::Utf8 { .. } => Error::invalid(origin, format!("row {row}: not valid UTF-8")),
        _ => Error::invalid(origin, format!("row {row}: malformed CSV: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::fmt::Write as _;
    use std::io::Write as _;
    use std::rc::Rc;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    fn gz(text: &str) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap()
    }

    fn collect_list(text: &str) -> Result<Vec<Named>> {
        let mut out = Vec::new();
        read_list(text.as_bytes(), Path::new("list.txt"), &mut |n| {
            out.push(n);
            Ok(())
        })?;
        Ok(out)
    }

    fn collect_inventory(data: &[u8], schema: Option<&[String]>) -> Result<Vec<Named>> {
        let mut out = Vec::new();
        let n = read_inventory_csv_gz(data, Path::new("inv.csv.gz"), schema, &mut |e| {
            out.push(e);
            Ok(())
        })?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    fn schema(s: &str) -> Vec<String> {
        s.split(", ").map(str::to_string).collect()
    }

    fn names(entries: &[Named]) -> Vec<&str> {
        entries.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn list_skips_comments_and_blank_lines_and_accepts_crlf() {
        let text = "\u{feff}# archive 2019\r\n/media/a.mp4\r\n\r\n   \n  relative/b c.mov  \n#s3://skipped/x\ns3://bucket/key with space.ts\r\n\t/last/no-newline.mxf";
        let got = collect_list(text).unwrap();
        assert_eq!(names(&got), ["/media/a.mp4", "relative/b c.mov", "s3://bucket/key with space.ts", "/last/no-newline.mxf"]);
        assert!(got.iter().all(|n| n.size.is_none() && n.etag.is_none()));
    }

    #[test]
    fn list_counts_entries_and_stops_at_callback_error() {
        let mut seen = 0;
        let err = read_list("a\nb\nc\n".as_bytes(), Path::new("list.txt"), &mut |n| {
            seen += 1;
            if n.name == "b" {
                Err(Error::Usage("stop at b".into()))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "stop at b");
        assert_eq!(seen, 2, "nothing after the failing entry is read");
        assert_eq!(read_list("a\n\n# c\nb\n".as_bytes(), Path::new("l"), &mut |_| Ok(())).unwrap(), 2);
    }

    #[test]
    fn list_errors_name_file_and_line() {
        let err = collect_list("ok.mp4\n# fine\ns3:///no-bucket.mp4\n").unwrap_err();
        assert_eq!(err.to_string(), "list.txt: line 3: \"s3:///no-bucket.mp4\" names no bucket (expected s3://bucket/key)");
        let err = read_list(&b"a\n\xff\xfe\n"[..], Path::new("list.txt"), &mut |_| Ok(())).unwrap_err();
        assert_eq!(err.to_string(), "list.txt: line 2: not valid UTF-8");
    }

    #[test]
    fn inventory_with_schema_decodes_keys_and_skips_old_versions_and_delete_markers() {
        let s = schema("Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag");
        let csv = concat!(
            "\"media-in\",\"raw/my+clip+1.mp4\",\"v2\",\"true\",\"false\",\"1048576\",\"2024-01-02T03:04:05.000Z\",\"9b2cf535f27731c974343645a3985328\"\n",
            "\"media-in\",\"raw/my+clip+1.mp4\",\"v1\",\"false\",\"false\",\"1000\",\"2023-01-02T03:04:05.000Z\",\"0a2cf535f27731c974343645a3985328\"\n",
            "\"media-in\",\"raw/C%2B%2B+talk.mov\",\"v1\",\"true\",\"false\",\"7\",\"2024-01-02T03:04:05.000Z\",\"\"\"abc-2\"\"\"\n",
            "\"media-in\",\"raw/gone.mp4\",\"v3\",\"true\",\"true\",\"\",\"2024-01-02T03:04:05.000Z\",\"\"\n",
            "\"media-in\",\"%E6%98%A0%E5%83%8F/caf%C3%A9%20%25.ts\",\"null\",\"TRUE\",\"FALSE\",\"0\",\"2024-01-02T03:04:05.000Z\",\"d41d8cd98f00b204e9800998ecf8427e\"\n",
        );
        let got = collect_inventory(&gz(csv), Some(&s)).unwrap();
        assert_eq!(
            got,
            [
                Named {
                    name: "s3://media-in/raw/my clip 1.mp4?versionId=v2".into(),
                    size: Some(1048576),
                    etag: Some("9b2cf535f27731c974343645a3985328".into()), archived_class: None
                },
                Named { name: "s3://media-in/raw/C++ talk.mov?versionId=v1".into(), size: Some(7), etag: Some("abc-2".into()), archived_class: None },
                Named {
                    name: "s3://media-in/映像/café %.ts".into(), size: Some(0), etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()), archived_class: None
                },
            ]
        );
    }

    #[test]
    fn inventory_reads_several_gzip_members_as_one_file() {
        let mut data = gz("\"b\",\"one\",\"1\"\n\"b\",\"two\",\"2\"\n");
        data.extend(gz("\"b\",\"three\",\"3\"\n"));
        data.extend(gz("\"b\",\"dir/four\",\"4\"\n"));
        let got = collect_inventory(&data, None).unwrap();
        assert_eq!(names(&got), ["s3://b/one", "s3://b/two", "s3://b/three", "s3://b/dir/four"]);
        assert_eq!(got.iter().map(|n| n.size.unwrap()).sum::<u64>(), 10);
    }

    #[test]
    fn inventory_without_schema_detects_the_size_column() {
        let two = collect_inventory(&gz("\"b\",\"a+b\"\n\"b\",\"c\"\n"), None).unwrap();
        assert_eq!(
            two,
            [Named { name: "s3://b/a b".into(), size: None, etag: None, archived_class: None }, Named { name: "s3://b/c".into(), size: None, etag: None, archived_class: None }]
        );
        let three = collect_inventory(&gz("\"b\",\"k\",\"12\",\"2024-01-01T00:00:00.000Z\"\n"), None).unwrap();
        assert_eq!(three[0].size, Some(12));
        let not_size = collect_inventory(&gz("\"b\",\"k\",\"v1\",\"true\"\n"), None).unwrap();
        assert_eq!(not_size[0].size, None);
    }

    #[test]
    fn inventory_truncated_gzip_is_one_clear_error() {
        let rows: String = (0..2000).map(|i| format!("\"b\",\"clip-{i}.mp4\",\"{i}\"\n")).collect();
        let data = gz(&rows);
        let cut = &data[..data.len() / 2];
        let err = collect_inventory(cut, None).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("inv.csv.gz: row "), "{text}");
        assert!(text.contains("corrupt or truncated gzip data"), "{text}");
        // Missing only the gzip trailer (CRC and length) is truncation too.
        let err = collect_inventory(&data[..data.len() - 4], None).unwrap_err();
        assert!(err.to_string().contains("corrupt or truncated gzip data"), "{err}");
        let err = collect_inventory(rows.as_bytes(), None).unwrap_err();
        assert!(err.to_string().starts_with("inv.csv.gz: row 1: corrupt or truncated gzip data"), "{err}");
    }

    #[test]
    fn inventory_malformed_rows_name_the_row() {
        let s = schema("Bucket, Key, Size");
        let cases = [
            ("\"b\",\"a\",\"1\"\n\"b\",\"x\",\"12kB\"\n", "inv.csv.gz: row 2: Size is \"12kB\", not a number of bytes"),
            ("\"b\",\"a\",\"1\"\n\"b\",\"x\"\n", "inv.csv.gz: row 2: has 2 columns, the inventory schema names 3"),
            ("\"b\",\"a%2\",\"1\"\n", "inv.csv.gz: row 1: Key \"a%2\" has a malformed %-escape at byte 1"),
            ("\"b\",\"%FF\",\"1\"\n", "inv.csv.gz: row 1: Key \"%FF\" is not UTF-8 once URL-decoded"),
            ("\"\",\"k\",\"1\"\n", "inv.csv.gz: row 1: empty Bucket"),
        ];
        for (csv, want) in cases {
            assert_eq!(collect_inventory(&gz(csv), Some(&s)).unwrap_err().to_string(), want, "{csv:?}");
        }
        let flags = schema("Bucket, Key, IsLatest");
        let err = collect_inventory(&gz("\"b\",\"k\",\"yes\"\n"), Some(&flags)).unwrap_err();
        assert_eq!(err.to_string(), "inv.csv.gz: row 1: IsLatest is \"yes\", expected true or false");
        let err = collect_inventory(&gz("\"b\"\n"), None).unwrap_err();
        assert_eq!(err.to_string(), "inv.csv.gz: row 1: has 1 columns, expected at least 2");
        let err = collect_inventory(&gz(""), Some(&schema("Bucket, Size"))).unwrap_err();
        assert_eq!(err.to_string(), "inv.csv.gz: inventory schema has no Key column (schema: Bucket, Size)");
    }

    /// The CSV example of the S3 User Guide ("Locating your inventory list").
    const AWS_MANIFEST: &str = r#"{
    "sourceBucket": "example-source-bucket",
    "destinationBucket": "arn:aws:s3:::example-inventory-destination-bucket",
    "version": "2016-11-30",
    "creationTimestamp" : "1514944800000",
    "fileFormat": "CSV",
    "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, ReplicationStatus, EncryptionStatus, ObjectLockRetainUntilDate, ObjectLockMode, ObjectLockLegalHoldStatus, IntelligentTieringAccessTier, BucketKeyStatus, ChecksumAlgorithm",
    "files": [
        {
            "key": "Inventory/example-source-bucket/2016-11-06T21-32Z/files/939c6d46-85a9-4ba8-87bd-9db705a579ce.csv.gz",
            "size": 2147483647,
            "MD5checksum": "f11166069f1990abeb9c97ace9cdfabc"
        }
    ]
}"#;

    #[test]
    fn inventory_manifest_as_aws_documents_it() {
        let m = parse_inventory_manifest(AWS_MANIFEST.as_bytes(), Path::new("manifest.json")).unwrap();
        assert_eq!(m.source_bucket, "example-source-bucket");
        assert_eq!(m.destination_bucket, "arn:aws:s3:::example-inventory-destination-bucket");
        assert_eq!(m.destination_bucket_name(), "example-inventory-destination-bucket");
        assert_eq!(m.file_format, "CSV");
        assert_eq!(m.file_schema.len(), 18);
        assert_eq!(&m.file_schema[..3], ["Bucket", "Key", "VersionId"]);
        assert_eq!(m.file_schema[17], "ChecksumAlgorithm");
        assert_eq!(
            m.files,
            [InventoryFile {
                key: "Inventory/example-source-bucket/2016-11-06T21-32Z/files/939c6d46-85a9-4ba8-87bd-9db705a579ce.csv.gz".into(),
                size: 2147483647,
                md5: Some("f11166069f1990abeb9c97ace9cdfabc".into()),
            }]
        );
        // Its schema reads a data file with all 18 columns.
        let row = "\"example-source-bucket\",\"a+b.mp4\",\"v1\",\"true\",\"false\",\"5\",\"2024-01-01T00:00:00.000Z\",\"e\",\"STANDARD\",\"false\",\"\",\"SSE-S3\",\"\",\"\",\"\",\"\",\"DISABLED\",\"\"\n";
        let got = collect_inventory(&gz(row), Some(&m.file_schema)).unwrap();
        // The version listed is the one read.
        assert_eq!(got, [Named { name: "s3://example-source-bucket/a b.mp4?versionId=v1".into(), size: Some(5), etag: Some("e".into()), archived_class: None }]);
    }

    #[test]
    fn inventory_manifest_refuses_orc_parquet_and_junk() {
        let orc = AWS_MANIFEST.replace("\"CSV\"", "\"ORC\"");
        let err = parse_inventory_manifest(orc.as_bytes(), Path::new("m/manifest.json")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "m/manifest.json: inventory format ORC is not supported: only CSV inventory reports can be read (set the report's output format to CSV)"
        );
        let parquet = AWS_MANIFEST.replace("\"CSV\"", "\"Parquet\"");
        assert!(parse_inventory_manifest(parquet.as_bytes(), Path::new("m"))
            .unwrap_err()
            .to_string()
            .contains("format Parquet is not supported"));
        let err = parse_inventory_manifest(b"{\"sourceBucket\": 1}", Path::new("manifest.json")).unwrap_err();
        assert!(err.to_string().starts_with("manifest.json: not an S3 Inventory manifest.json: "), "{err}");
        let no_key = AWS_MANIFEST.replace("Bucket, Key, ", "Bucket, ");
        let err = parse_inventory_manifest(no_key.as_bytes(), Path::new("manifest.json")).unwrap_err();
        assert!(err.to_string().starts_with("manifest.json: inventory schema has no Key column"), "{err}");
    }

    /// Counts the compressed bytes the reader has consumed.
    struct Metered<'a> {
        data: &'a [u8],
        consumed: Rc<Cell<usize>>,
    }

    impl Read for Metered<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.data.read(buf)?;
            self.consumed.set(self.consumed.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn inventory_streams_200k_rows_without_reading_ahead() {
        const ROWS: u64 = 200_000;
        let mut text = String::with_capacity(ROWS as usize * 48);
        for i in 0..ROWS {
            writeln!(text, "\"archive\",\"tapes/{:06}/reel+{i}.mxf\",\"{}\"", i / 1000, i * 7).unwrap();
        }
        let data = gz(&text);
        drop(text);
        let consumed = Rc::new(Cell::new(0usize));
        let (mut count, mut bytes, mut most_ahead) = (0u64, 0u64, 0usize);
        let reader = Metered { data: &data, consumed: consumed.clone() };
        let n = read_inventory_csv_gz(reader, Path::new("big.csv.gz"), None, &mut |e| {
            // How far reading has run ahead of this entry's share of the compressed stream.
            let share = (count as usize * data.len()) / ROWS as usize;
            most_ahead = most_ahead.max(consumed.get().saturating_sub(share));
            count += 1;
            bytes += e.size.unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!((n, count), (ROWS, ROWS));
        assert_eq!(bytes, 7 * ROWS * (ROWS - 1) / 2);
        assert_eq!(consumed.get(), data.len());
        // Entries arrive as the input is read: never more than a few read buffers ahead.
        assert!(most_ahead <= 128 << 10, "reading ran {most_ahead} bytes ahead of the entries (of {})", data.len());
    }
}
