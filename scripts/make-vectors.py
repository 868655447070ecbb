#!/usr/bin/env python3
"""Write testdata/vectors/*.json: known-answer vectors for every mode.

NIST values are copied from the publications named in each file; before a
vector is written it is checked against Python `cryptography` (OpenSSL), so
a typo here cannot become a test that passes for the wrong reason.
Vectors marked "cross-check" come from `cryptography` itself and pin
cases the NIST sets lack (non-96-bit GCM IV without AAD, counter carries).
"""
import json, os, sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import padding

OUT = os.path.join(os.path.dirname(__file__), "..", "testdata", "vectors")
PT4 = ("6bc1bee22e409f96e93d7e117393172a" "ae2d8a571e03ac9c9eb76fac45af8e51"
       "30c81c46a35ce411e5fbc1191a0a52ef" "f69f2445df4f9b17ad2b417be66c3710")
K128 = "2b7e151628aed2a6abf7158809cf4f3c"
K192 = "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b"
K256 = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"
CTR_IV = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
CBC_IV = "000102030405060708090a0b0c0d0e0f"

def ctr(k, iv, pt):
    e = Cipher(algorithms.AES(bytes.fromhex(k)), modes.CTR(bytes.fromhex(iv).ljust(16, b"\0"))).encryptor()
    return (e.update(bytes.fromhex(pt)) + e.finalize()).hex()

def cbc_raw(k, iv, pt):  # no padding: NIST vectors are whole blocks
    e = Cipher(algorithms.AES(bytes.fromhex(k)), modes.CBC(bytes.fromhex(iv))).encryptor()
    return (e.update(bytes.fromhex(pt)) + e.finalize()).hex()

def cbc_pkcs7(k, iv, pt):
    p = padding.PKCS7(128).padder()
    return cbc_raw(k, iv, (p.update(bytes.fromhex(pt)) + p.finalize()).hex())

def gcm(k, iv, pt):
    return AESGCM(bytes.fromhex(k)).encrypt(bytes.fromhex(iv), bytes.fromhex(pt), None).hex()

vectors = {
    # NIST SP 800-38A, F.5.1 / F.5.3 / F.5.5 (CTR-AES128/192/256.Encrypt)
    "ctr-sp800-38a-f51-aes128": ("ctr", K128, CTR_IV, PT4,
        "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"
        "5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee", "NIST SP 800-38A F.5.1", ctr),
    "ctr-sp800-38a-f53-aes192": ("ctr", K192, CTR_IV, PT4,
        "1abc932417521ca24f2b0459fe7e6e0b090339ec0aa6faefd5ccc2c6f4ce8e94"
        "1e36b26bd1ebc670d1bd1d665620abf74f78a7f6d29809585a97daec58c6b050", "NIST SP 800-38A F.5.3", ctr),
    "ctr-sp800-38a-f55-aes256": ("ctr", K256, CTR_IV, PT4,
        "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
        "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6", "NIST SP 800-38A F.5.5", ctr),
    # NIST SP 800-38A, F.2.1 / F.2.3 / F.2.5 (CBC-AES128/192/256.Encrypt), whole blocks, no padding
    "cbc-sp800-38a-f21-aes128": ("cbc-nopad", K128, CBC_IV, PT4,
        "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
        "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7", "NIST SP 800-38A F.2.1", cbc_raw),
    "cbc-sp800-38a-f23-aes192": ("cbc-nopad", K192, CBC_IV, PT4,
        "4f021db243bc633d7178183a9fa071e8b4d9ada9ad7dedf4e5e738763f69145a"
        "571b242012fb7ae07fa9baac3df102e008b0e27988598881d920a9e64f5615cd", "NIST SP 800-38A F.2.3", cbc_raw),
    "cbc-sp800-38a-f25-aes256": ("cbc-nopad", K256, CBC_IV, PT4,
        "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
        "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b", "NIST SP 800-38A F.2.5", cbc_raw),
    # The GCM specification (McGrew & Viega), test cases 1, 2, 13, 14 (no AAD, 96-bit IV)
    "gcm-spec-tc01-aes128-empty": ("gcm", "00" * 16, "00" * 12, "",
        "58e2fccefa7e3061367f1d57a4e7455a", "GCM spec test case 1", gcm),
    "gcm-spec-tc02-aes128": ("gcm", "00" * 16, "00" * 12, "00" * 16,
        "0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf", "GCM spec test case 2", gcm),
    "gcm-spec-tc13-aes256-empty": ("gcm", "00" * 32, "00" * 12, "",
        "530f8afbc74536b9a963b4f1c4cb738b", "GCM spec test case 13", gcm),
    "gcm-spec-tc14-aes256": ("gcm", "00" * 32, "00" * 12, "00" * 16,
        "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919", "GCM spec test case 14", gcm),
}

# Cross-checks from cryptography (OpenSSL): 16-byte GCM IVs (J0 via GHASH),
# CTR counters whose low 64 bits carry, PKCS#7 tails, odd lengths, all key sizes.
PT_ODD = bytes(range(256)).hex() * 2 + "0102030405"  # 517 bytes
cross = {
    "gcm-iv16-aes256": ("gcm", K256, "cafebabefacedbaddecaf888feedface", PT_ODD, gcm),
    "gcm-iv16-aes128": ("gcm", K128, "000102030405060708090a0b0c0d0e0f", PT4[:90], gcm),
    "gcm-iv16-aes192-empty": ("gcm", K192, "ffffffffffffffffffffffffffffffff", "", gcm),
    "gcm-iv12-aes256-odd": ("gcm", K256, "cafebabefacedbaddecaf888", PT_ODD, gcm),
    "ctr-carry64-aes256": ("ctr", K256, "0011223344556677fffffffffffffff0", PT_ODD, ctr),
    "ctr-carry128-wrap-aes128": ("ctr", K128, "fffffffffffffffffffffffffffffffe", PT_ODD, ctr),
    "ctr-iv12-aes256": ("ctr", K256, "00112233445566778899aabb", PT_ODD, ctr),
    "cbc-pkcs7-aes256": ("cbc", K256, CBC_IV, PT_ODD, cbc_pkcs7),
    "cbc-pkcs7-aes192-empty": ("cbc", K192, CBC_IV, "", cbc_pkcs7),
    "cbc-pkcs7-aes128-block": ("cbc", K128, CBC_IV, PT4[:32], cbc_pkcs7),
}

os.makedirs(OUT, exist_ok=True)
for name, (mode, k, iv, pt, ct, source, check) in vectors.items():
    got = check(k, iv, pt)
    if got != ct:
        sys.exit(f"{name}: transcribed vector disagrees with cryptography: {got}")
    json.dump({"source": source, "mode": mode, "key": k, "iv": iv, "plaintext": pt, "ciphertext": ct},
              open(os.path.join(OUT, name + ".json"), "w"), indent=1)
for name, (mode, k, iv, pt, f) in cross.items():
    json.dump({"source": "cross-check: Python cryptography " + __import__("cryptography").__version__,
               "mode": mode, "key": k, "iv": iv, "plaintext": pt, "ciphertext": f(k, iv, pt)},
              open(os.path.join(OUT, name + ".json"), "w"), indent=1)
print(f"wrote {len(vectors) + len(cross)} vectors to {os.path.normpath(OUT)}")
