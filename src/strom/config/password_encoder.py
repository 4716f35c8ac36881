"""Encryption of dynamically set passwords, in the format Kafka's password encoder stores.

Kafka keeps a password set through AlterConfigs encrypted with a key derived from
`password.encoder.secret`: PBKDF2 (HMAC-SHA512 unless password.encoder.keyfactory.algorithm
says otherwise) over a random 256-byte salt gives the key, AES/CBC/PKCS5Padding with a random IV
encrypts the UTF-8 bytes, and the stored value lists every parameter needed to decrypt:

    keyFactoryAlgorithm:PBKDF2WithHmacSHA512,cipherAlgorithm:AES/CBC/PKCS5Padding,keyLength:128,
    salt:<base64>,iterations:4096,encryptedPassword:<base64>,passwordLength:<chars>,
    initializationVector:<base64>

(one line, in no particular order). The standard library has PBKDF2 but no block cipher, so AES
is implemented here from FIPS-197; it only ever sees a few short passwords.
"""

from __future__ import annotations

import base64
import hashlib
import os

from strom.config.definitions import ConfigError

DEFAULT_KEY_FACTORY = "PBKDF2WithHmacSHA512"
SUPPORTED_CIPHER = "AES/CBC/PKCS5Padding"
_PRF = {
    "PBKDF2WithHmacSHA512": "sha512",
    "PBKDF2WithHmacSHA256": "sha256",
    "PBKDF2WithHmacSHA1": "sha1",
}
_SALT_BYTES = 256
_BLOCK = 16


def encode(
    password: str,
    secret: str,
    *,
    key_factory: str | None = None,
    cipher: str = SUPPORTED_CIPHER,
    key_length: int = 128,
    iterations: int = 4096,
) -> str:
    factory = key_factory or DEFAULT_KEY_FACTORY
    salt = os.urandom(_SALT_BYTES)
    key = _derive_key(secret, factory, cipher, key_length, salt, iterations)
    iv = os.urandom(_BLOCK)
    data = password.encode("utf-8")
    pad = _BLOCK - len(data) % _BLOCK
    encrypted = _cbc_encrypt(key, iv, data + bytes([pad]) * pad)
    fields = {
        "keyFactoryAlgorithm": factory,
        "cipherAlgorithm": cipher,
        "keyLength": str(key_length),
        "salt": _b64(salt),
        "iterations": str(iterations),
        "encryptedPassword": _b64(encrypted),
        # Java counts UTF-16 code units.
        "passwordLength": str(len(password.encode("utf-16-le")) // 2),
        "initializationVector": _b64(iv),
    }
    return ",".join(f"{k}:{v}" for k, v in fields.items())


def decode(encoded: str, secret: str) -> str:
    """The password `encoded` holds; ConfigError when it cannot be decrypted with `secret`."""
    fields: dict[str, str] = {}
    for item in encoded.split(","):
        name, sep, value = item.strip().partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    try:
        cipher = fields["cipherAlgorithm"]
        key = _derive_key(
            secret,
            fields.get("keyFactoryAlgorithm") or DEFAULT_KEY_FACTORY,
            cipher,
            int(fields["keyLength"]),
            base64.b64decode(fields["salt"]),
            int(fields["iterations"]),
        )
        iv = base64.b64decode(fields["initializationVector"])
        padded = _cbc_decrypt(key, iv, base64.b64decode(fields["encryptedPassword"]))
        pad = padded[-1] if padded else 0
        if not 1 <= pad <= _BLOCK or padded[-pad:] != bytes([pad]) * pad:
            raise ValueError("bad padding")
        password = padded[:-pad].decode("utf-8")
        length = int(fields["passwordLength"])
    except (KeyError, ValueError) as exc:
        raise ConfigError("Password could not be decoded") from exc
    if len(password.encode("utf-16-le")) // 2 != length:
        raise ConfigError("Password could not be decoded, sanity check of length failed")
    return password


def check_algorithms(key_factory: str | None, cipher: str, key_length: int) -> None:
    """ConfigError unless Strom can encode with these password.encoder.* settings."""
    if (key_factory or DEFAULT_KEY_FACTORY) not in _PRF:
        raise ConfigError(
            f"password.encoder.keyfactory.algorithm {key_factory} is not supported; Strom "
            f"supports {', '.join(_PRF)}"
        )
    if cipher != SUPPORTED_CIPHER:
        raise ConfigError(
            f"password.encoder.cipher.algorithm {cipher} is not supported; Strom supports "
            f"{SUPPORTED_CIPHER}"
        )
    if key_length not in (128, 192, 256):
        raise ConfigError(f"password.encoder.key.length {key_length} is not an AES key length")


def _derive_key(
    secret: str, factory: str, cipher: str, key_length: int, salt: bytes, iterations: int
) -> bytes:
    check_algorithms(factory, cipher, key_length)
    return hashlib.pbkdf2_hmac(
        _PRF[factory], secret.encode("utf-8"), salt, iterations, dklen=key_length // 8
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- AES (FIPS-197) -----------------------------------------------------------------------------


def _xtime(a: int) -> int:
    a <<= 1
    return (a ^ 0x11B) & 0xFF if a & 0x100 else a


def _gmul(a: int, b: int) -> int:
    out = 0
    while b:
        if b & 1:
            out ^= a
        a = _xtime(a)
        b >>= 1
    return out


def _make_sbox() -> tuple[bytes, bytes]:
    # Powers of the generator 3 give every non-zero element of GF(2^8) and its logarithm, and
    # so its multiplicative inverse.
    exp, log = [0] * 255, [0] * 256
    x = 1
    for i in range(255):
        exp[i], log[x] = x, i
        x = _gmul(x, 3)
    sbox = bytearray(256)
    for x in range(256):
        # The inverse (0 maps to 0), then the affine transform.
        inv = 0 if x == 0 else exp[(255 - log[x]) % 255]
        s = inv
        for shift in range(1, 5):
            s ^= ((inv << shift) | (inv >> (8 - shift))) & 0xFF
        sbox[x] = s ^ 0x63
    inverse = bytearray(256)
    for x, s in enumerate(sbox):
        inverse[s] = x
    return bytes(sbox), bytes(inverse)


_SBOX, _INV_SBOX = _make_sbox()


def _expand_key(key: bytes) -> list[bytes]:
    nk = len(key) // 4
    rounds = nk + 6
    words = [key[4 * i : 4 * i + 4] for i in range(nk)]
    rcon = 1
    for i in range(nk, 4 * (rounds + 1)):
        temp = words[i - 1]
        if i % nk == 0:
            temp = bytes(_SBOX[b] for b in temp[1:] + temp[:1])
            temp = bytes([temp[0] ^ rcon]) + temp[1:]
            rcon = _xtime(rcon)
        elif nk > 6 and i % nk == 4:
            temp = bytes(_SBOX[b] for b in temp)
        words.append(bytes(a ^ b for a, b in zip(words[i - nk], temp, strict=True)))
    return [b"".join(words[4 * r : 4 * r + 4]) for r in range(rounds + 1)]


def _add(state: bytes, round_key: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(state, round_key, strict=True))


# The state is column-major: byte 4*c + r is row r of column c.
_SHIFT = [((c + r) % 4) * 4 + r for c in range(4) for r in range(4)]
_UNSHIFT = [0] * 16
for _to, _from in enumerate(_SHIFT):
    _UNSHIFT[_from] = _to


def _mix(state: bytes, m: tuple[int, int, int, int]) -> bytes:
    out = bytearray(16)
    for c in range(4):
        col = state[4 * c : 4 * c + 4]
        for r in range(4):
            out[4 * c + r] = (
                _gmul(col[0], m[(0 - r) % 4])
                ^ _gmul(col[1], m[(1 - r) % 4])
                ^ _gmul(col[2], m[(2 - r) % 4])
                ^ _gmul(col[3], m[(3 - r) % 4])
            )
    return bytes(out)


def encrypt_block(keys: list[bytes], block: bytes) -> bytes:
    state = _add(block, keys[0])
    for r in range(1, len(keys)):
        state = bytes(_SBOX[state[i]] for i in _SHIFT)
        if r != len(keys) - 1:
            state = _mix(state, (2, 3, 1, 1))
        state = _add(state, keys[r])
    return state


def decrypt_block(keys: list[bytes], block: bytes) -> bytes:
    state = _add(block, keys[-1])
    for r in range(len(keys) - 2, -1, -1):
        state = bytes(_INV_SBOX[state[i]] for i in _UNSHIFT)
        state = _add(state, keys[r])
        if r != 0:
            state = _mix(state, (14, 11, 13, 9))
    return state


def _cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    keys = _expand_key(key)
    out, previous = bytearray(), iv
    for i in range(0, len(data), _BLOCK):
        previous = encrypt_block(keys, _add(data[i : i + _BLOCK], previous))
        out += previous
    return bytes(out)


def _cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    if not data or len(data) % _BLOCK or len(iv) != _BLOCK:
        raise ValueError("not whole AES blocks")
    keys = _expand_key(key)
    out, previous = bytearray(), iv
    for i in range(0, len(data), _BLOCK):
        block = data[i : i + _BLOCK]
        out += _add(decrypt_block(keys, block), previous)
        previous = block
    return bytes(out)
