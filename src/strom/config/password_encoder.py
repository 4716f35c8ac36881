"""Encryption of dynamically set passwords, in the format Kafka's password encoder stores.

Kafka keeps a password set through AlterConfigs encrypted with a key derived from
`password.encoder.secret`: PBKDF2 (HMAC-SHA512 unless password.encoder.keyfactory.algorithm
says otherwise) over a random 256-byte salt gives the key, AES/CBC/PKCS5Padding with a random IV
encrypts the UTF-8 bytes, and the stored value lists every parameter needed to decrypt:

    keyFactoryAlgorithm:PBKDF2WithHmacSHA512,cipherAlgorithm:AES/CBC/PKCS5Padding,keyLength:128,
    salt:<base64>,iterations:4096,encryptedPassword:<base64>,passwordLength:<chars>,
    initializationVector:<base64>

(one line, in no particular order). PBKDF2 comes from hashlib, AES-CBC from `cryptography`;
the PKCS5 padding is checked here, so that a wrong secret is a ConfigError.
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


def _cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    # Imported here: a broker without passwords to encrypt never loads cryptography.
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    if not data or len(data) % _BLOCK or len(iv) != _BLOCK:
        raise ValueError("not whole AES blocks")
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()
