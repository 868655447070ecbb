#!/usr/bin/env python3
"""Generate testdata/media: a tiny synthetic HLS rendition and an MP4 clip.

The files are structurally valid containers (MPEG-TS packets with PAT/PMT
and PES headers; an ISO-BMFF ftyp/free/mdat box layout) filled with
deterministic pseudo-random payload, so they exercise the encryptor with
realistic sizes and tails without shipping real footage. Deterministic:
re-running writes the same bytes.
"""
import os, random, struct, zlib

OUT = os.path.join(os.path.dirname(__file__), "..", "testdata", "media")
rng = random.Random(20261122)

def crc32_mpeg(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc

def section(table_id: int, body: bytes) -> bytes:
    head = bytes([table_id]) + struct.pack(">H", 0xB000 | (len(body) + 4 + 5)) + b"\x00\x01\xc1\x00\x00"
    sec = head + body
    return b"\x00" + sec + struct.pack(">I", crc32_mpeg(sec))  # pointer_field + section

def packet(pid: int, cc: int, payload: bytes, start: bool) -> bytes:
    hdr = struct.pack(">BHB", 0x47, (0x4000 if start else 0) | pid, 0x10 | (cc & 0xF))
    return (hdr + payload).ljust(188, b"\xff")[:188]

def ts_segment(n_packets: int, seq: int) -> bytes:
    pat = section(0x00, struct.pack(">HH", 1, 0xE000 | 0x1000))
    pmt = section(0x02, struct.pack(">HH", 0xE000 | 0x100, 0xF000) + struct.pack(">BHH", 0x1B, 0xE000 | 0x100, 0xF000))
    out = [packet(0x0000, 0, pat, True), packet(0x1000, 0, pmt, True)]
    cc = 0
    for i in range(n_packets - 2):
        start = i % 40 == 0
        if start:
            pts = (seq * 400 + i) * 3000
            pes = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05" + bytes([0x21 | ((pts >> 29) & 0x0E), (pts >> 22) & 0xFF, 0x01 | ((pts >> 14) & 0xFE), (pts >> 7) & 0xFF, 0x01 | ((pts << 1) & 0xFE)])
            payload = pes + rng.randbytes(184 - len(pes))
        else:
            payload = rng.randbytes(184)
        out.append(packet(0x100, cc, payload, start))
        cc += 1
    return b"".join(out)

def mp4_clip(mdat_len: int) -> bytes:
    ftyp = b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41"
    boxes = struct.pack(">I", 8 + len(ftyp)) + b"ftyp" + ftyp
    boxes += struct.pack(">I", 8 + 24) + b"free" + b"sealpipe synthetic clip."
    boxes += struct.pack(">I", 8 + mdat_len) + b"mdat" + rng.randbytes(mdat_len)
    return boxes

os.makedirs(os.path.join(OUT, "hls"), exist_ok=True)
files = {
    "hls/segment_000.ts": ts_segment(2000, 0),   # 376,000 bytes
    "hls/segment_001.ts": ts_segment(1999, 1),   # 375,812 bytes (odd tail for CBC/GCM)
    "hls/segment_002.ts": ts_segment(7, 2),      # 1,316 bytes: a short last segment
    "clip.mp4": mp4_clip(1_500_000 + 13),        # above the 1 MiB mmap threshold, odd length
}
playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n"
for name in sorted(files):
    if name.startswith("hls/"):
        playlist += "#EXTINF:4.000,\n" + os.path.basename(name) + "\n"
playlist += "#EXT-X-ENDLIST\n"
files["hls/index.m3u8"] = playlist.encode()
for name, data in files.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"wrote {len(files)} files, {sum(map(len, files.values()))} bytes to {os.path.normpath(OUT)}")
