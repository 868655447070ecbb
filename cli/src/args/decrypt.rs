//! The flags of `decrypt` and `verify`.

use std::path::PathBuf;

use clap::Args;

use super::ModeArg;

#[derive(Args)]
pub struct DecryptArgs {
    /// The encrypted file. Example: /tmp/enc/big.mp4
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,
    /// Where to write the plaintext: a file path (not a folder). Example: --out /tmp/big.mp4
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub out: PathBuf,
    /// Manifest holding the file's record (key, IV, mode, digest); a local file or s3://bucket/key.
    /// Without it, give --envelope, or --mode, a key and --iv-hex. Example: --manifest /tmp/enc/manifest.jsonl
    #[arg(long, value_name = "PATH", conflicts_with_all = ["key_hex", "data_key_file"], help_heading = "Keys")]
    pub manifest: Option<PathBuf>,
    /// Take the key, IV and mode from the object's own envelope (an S3 output sealpipe wrote
    /// carries one in its metadata), without a manifest. Example: --envelope
    #[arg(long, conflicts_with_all = ["manifest", "key_hex", "data_key_file", "mode", "iv_hex"], help_heading = "Keys")]
    pub envelope: bool,
    /// Cipher mode, without a manifest. Example: --mode ctr
    #[arg(long, value_enum, help_heading = "Keys")]
    pub mode: Option<ModeArg>,
    /// Raw data key in hex, without a manifest. Example: --key-hex 603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4
    #[arg(long, value_name = "HEX", conflicts_with = "data_key_file", help_heading = "Keys")]
    pub key_hex: Option<String>,
    /// Raw data key file (16, 24 or 32 bytes), without a manifest. Example: --data-key-file key.bin
    #[arg(long, value_name = "PATH", help_heading = "Keys")]
    pub data_key_file: Option<PathBuf>,
    /// IV in hex, without a manifest (12 or 16 bytes for CTR/GCM, 16 for CBC).
    /// Example: --iv-hex f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff
    #[arg(long, value_name = "HEX", help_heading = "Keys")]
    pub iv_hex: Option<String>,
    /// Overwrite the output if it exists. Example: --force
    #[arg(long, help_heading = "Run control")]
    pub force: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Manifest whose files to verify (a local file or s3://bucket/key). Example: --manifest /tmp/enc/manifest.jsonl
    #[arg(long, value_name = "PATH", help_heading = "Input")]
    pub manifest: PathBuf,
}
