"""Dynamic passwords encrypted as Kafka's password encoder stores them: AES-CBC against the
SP 800-38A vectors, the stored format against Java's own PBKDF2 and AES (when a JDK is
here), and the store/load path of broker configs."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from strom.config import BrokerConfig, ConfigError, decode_passwords, encode_passwords
from strom.config import password_encoder as pe


def test_cbc_against_sp_800_38a() -> None:
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    iv = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    plain = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
    cipher = "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
    assert pe._cbc_encrypt(key, iv, plain).hex() == cipher
    assert pe._cbc_decrypt(key, iv, bytes.fromhex(cipher)) == plain


@pytest.mark.parametrize("key_length", [128, 192, 256])
def test_round_trip_and_format(key_length: int) -> None:
    encoded = pe.encode("hunter2 é 𝄞", "s3cret", key_length=key_length, iterations=1024)
    fields = dict(item.split(":", 1) for item in encoded.split(","))
    assert set(fields) == {
        "keyFactoryAlgorithm",
        "cipherAlgorithm",
        "keyLength",
        "salt",
        "iterations",
        "encryptedPassword",
        "passwordLength",
        "initializationVector",
    }
    assert fields["keyFactoryAlgorithm"] == "PBKDF2WithHmacSHA512"
    assert fields["cipherAlgorithm"] == "AES/CBC/PKCS5Padding"
    assert fields["passwordLength"] == "12"  # UTF-16 units, as Java counts: 𝄞 is two
    assert "hunter2" not in encoded
    assert pe.decode(encoded, "s3cret") == "hunter2 é 𝄞"
    with pytest.raises(ConfigError, match="Password could not be decoded"):
        pe.decode(encoded, "other")


def test_unsupported_algorithms_are_refused() -> None:
    with pytest.raises(ConfigError, match="AES/GCM/NoPadding is not supported"):
        pe.encode("p", "s", cipher="AES/GCM/NoPadding")
    with pytest.raises(ConfigError, match="PBKDF2WithHmacMD5 is not supported"):
        pe.encode("p", "s", key_factory="PBKDF2WithHmacMD5")


JAVA_CHECK = """
import javax.crypto.*;
import javax.crypto.spec.*;
import java.nio.charset.StandardCharsets;
import java.util.*;

// Encrypts or decrypts one password in the stored format, with the JDK's own PBKDF2 and AES.
public class PasswordFormatCheck {
    static SecretKeySpec key(String secret, String factory, int bits, byte[] salt, int rounds)
            throws Exception {
        PBEKeySpec spec = new PBEKeySpec(secret.toCharArray(), salt, rounds, bits);
        byte[] raw = SecretKeyFactory.getInstance(factory).generateSecret(spec).getEncoded();
        return new SecretKeySpec(raw, "AES");
    }

    public static void main(String[] args) throws Exception {
        String secret = args[1];
        Base64.Encoder enc = Base64.getEncoder();
        Base64.Decoder dec = Base64.getDecoder();
        if (args[0].equals("encode")) {
            byte[] salt = new byte[256];
            new java.security.SecureRandom().nextBytes(salt);
            Cipher c = Cipher.getInstance("AES/CBC/PKCS5Padding");
            c.init(Cipher.ENCRYPT_MODE, key(secret, "PBKDF2WithHmacSHA512", 128, salt, 4096));
            byte[] out = c.doFinal(args[2].getBytes(StandardCharsets.UTF_8));
            byte[] iv = c.getParameters().getParameterSpec(IvParameterSpec.class).getIV();
            System.out.println("salt:" + enc.encodeToString(salt)
                + ",keyFactoryAlgorithm:PBKDF2WithHmacSHA512,keyLength:128,iterations:4096"
                + ",cipherAlgorithm:AES/CBC/PKCS5Padding,initializationVector:"
                + enc.encodeToString(iv) + ",encryptedPassword:" + enc.encodeToString(out)
                + ",passwordLength:" + args[2].length());
            return;
        }
        Map<String, String> f = new HashMap<>();
        for (String item : args[2].split(",")) {
            int colon = item.indexOf(':');
            f.put(item.substring(0, colon), item.substring(colon + 1));
        }
        Cipher c = Cipher.getInstance(f.get("cipherAlgorithm"));
        c.init(Cipher.DECRYPT_MODE,
            key(secret, f.get("keyFactoryAlgorithm"), Integer.parseInt(f.get("keyLength")),
                dec.decode(f.get("salt")), Integer.parseInt(f.get("iterations"))),
            new IvParameterSpec(dec.decode(f.get("initializationVector"))));
        byte[] plain = c.doFinal(dec.decode(f.get("encryptedPassword")));
        System.out.println(new String(plain, StandardCharsets.UTF_8));
    }
}
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="needs a JDK")
def test_format_is_what_java_encrypts_and_decrypts(tmp_path: Path) -> None:
    source = tmp_path / "PasswordFormatCheck.java"
    source.write_text(JAVA_CHECK)

    def java(*args: str) -> str:
        done = subprocess.run(
            ["java", str(source), *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    from_java = java("encode", "the secret", "pässwörd")
    assert pe.decode(from_java, "the secret") == "pässwörd"
    from_strom = pe.encode("geheim é", "the secret", key_length=256)
    assert java("decode", "the secret", from_strom) == "geheim é"


def test_stored_dynamic_passwords(caplog: pytest.LogCaptureFixture) -> None:
    config = BrokerConfig.load(
        None, {"password.encoder.secret": "new", "password.encoder.iterations": "1024"}
    )
    plain = {"listener.name.ext.ssl.key.password": "pw", "log.retention.ms": "5"}
    stored = encode_passwords(plain, config)
    assert stored["log.retention.ms"] == "5"
    assert "encryptedPassword:" in stored["listener.name.ext.ssl.key.password"]
    assert decode_passwords(stored, config) == plain
    # After a change of secret the old one still reads what it wrote.
    rotated = BrokerConfig.load(
        None, {"password.encoder.secret": "newer", "password.encoder.old.secret": "new"}
    )
    assert decode_passwords(stored, rotated) == plain
    # Without the right secret the password is left out, with an error line.
    with caplog.at_level(logging.ERROR, logger="strom.config"):
        lost = decode_passwords(stored, BrokerConfig.load(None, {}))
    assert lost == {"log.retention.ms": "5"}
    assert "listener.name.ext.ssl.key.password could not be decoded" in caplog.text
    with pytest.raises(ConfigError, match="Password encoder secret not configured"):
        encode_passwords(plain, BrokerConfig.load(None, {}))
