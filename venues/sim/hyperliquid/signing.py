"""Hyperliquid's signatures, verified the way the venue does: the signer's address is RECOVERED
from the secp256k1 signature and compared with the account's wallet address.

* L1 actions (order, cancel, cancelByCloid, updateLeverage, setReferrer, ...): the "phantom
  agent" scheme. ``connectionId = keccak(msgpack(action) ‖ nonce (8 bytes, big-endian) ‖
  vault flag (0x00, or 0x01 ‖ 20-byte vault address) [‖ 0x00 ‖ expiresAfter (8 bytes)])``;
  the signed message is the EIP-712 ``Agent(string source, bytes32 connectionId)`` with
  ``source`` "a" (mainnet) or "b" (testnet) in the domain ``Exchange`` / version 1 / chainId
  1337 / verifyingContract 0x0.
* user-signed actions (approveBuilderFee, ...): EIP-712 of the action's own fields in the
  domain ``HyperliquidSignTransaction`` / version 1 / chainId ``signatureChainId``.

Hashing and encoding reuse what ccxt ships (``ccxt.static_dependencies``: keccak, msgpack,
EIP-712 typed data); recovery uses ``coincurve`` (a dependency of ccxt), with a small pure-Python
fallback when it is missing.
"""

from __future__ import annotations

from typing import Any

from ccxt.static_dependencies import keccak as _keccak
from ccxt.static_dependencies.ethabi import typed_data as _typed
from ccxt.static_dependencies.msgpack import packb

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
AGENT_TYPES = {"Agent": [{"name": "source", "type": "string"}, {"name": "connectionId", "type": "bytes32"}]}

#: user-signed action type → (EIP-712 primary type, its fields); the action carries the values
USER_SIGNED: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "approveBuilderFee": ("HyperliquidTransaction:ApproveBuilderFee",
                          [("hyperliquidChain", "string"), ("maxFeeRate", "string"), ("builder", "address"),
                           ("nonce", "uint64")]),
}


def keccak(data: bytes) -> bytes:
    return bytes(_keccak.SHA3(data))


def action_hash(action: Any, vault: str | None, nonce: int, expires_after: int | None = None) -> bytes:
    data = bytes(packb(action)) + int(nonce).to_bytes(8, "big")
    if vault is None:
        data += b"\x00"
    else:
        data += b"\x01" + bytes.fromhex(vault.removeprefix("0x"))
    if expires_after is not None:
        data += b"\x00" + int(expires_after).to_bytes(8, "big")
    return keccak(data)


def _digest(domain: dict, types: dict, message: dict) -> bytes:
    m = _typed.encode_typed_data(domain, types, message)
    return keccak(b"\x19\x01" + bytes(m.header) + bytes(m.body))


def l1_digest(action: Any, vault: str | None, nonce: int, expires_after: int | None, source: str) -> bytes:
    domain = {"chainId": 1337, "name": "Exchange", "verifyingContract": ZERO_ADDRESS, "version": "1"}
    agent = {"source": source, "connectionId": action_hash(action, vault, nonce, expires_after)}
    return _digest(domain, AGENT_TYPES, agent)


def user_signed_digest(action: dict) -> bytes:
    """The EIP-712 digest of a user-signed action (KeyError / ValueError if malformed)."""
    primary, fields = USER_SIGNED[action["type"]]
    domain = {"chainId": int(str(action["signatureChainId"]), 16), "name": "HyperliquidSignTransaction",
              "verifyingContract": ZERO_ADDRESS, "version": "1"}
    types = {primary: [{"name": n, "type": t} for n, t in fields]}
    return _digest(domain, types, {n: action[n] for n, _ in fields})


# ---- recovery --------------------------------------------------------------------------------
_P = 2**256 - 2**32 - 977
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_G = (0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
      0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % _P == 0:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], -1, _P) % _P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, _P) % _P
    x = (lam * lam - a[0] - b[0]) % _P
    return x, (lam * (a[0] - x) - a[1]) % _P


def _mul(k: int, pt):
    out = None
    while k:
        if k & 1:
            out = _add(out, pt)
        pt = _add(pt, pt)
        k >>= 1
    return out


def _recover_pure(digest: bytes, r: int, s: int, recid: int) -> bytes:
    """Uncompressed public key (64 bytes, no prefix): Q = r⁻¹ (s·R − e·G)."""
    x = r + (recid >> 1) * _N
    y = pow((x * x * x + 7) % _P, (_P + 1) // 4, _P)
    if (y * y - x * x * x - 7) % _P:
        raise ValueError("signature: r is not on the curve")
    if y & 1 != recid & 1:
        y = _P - y
    e = int.from_bytes(digest, "big")
    rinv = pow(r, -1, _N)
    q = _add(_mul(s * rinv % _N, (x, y)), _mul((-e * rinv) % _N, _G))
    if q is None:
        raise ValueError("signature: no public key")
    return q[0].to_bytes(32, "big") + q[1].to_bytes(32, "big")


def recover_address(digest: bytes, signature: Any) -> str:
    """The lower-case 0x address whose key made ``signature`` ({r, s, v}) over ``digest``;
    ValueError if the signature is malformed."""
    if not isinstance(signature, dict):
        raise ValueError("signature: expected an object {r, s, v}")
    try:
        r = int(str(signature["r"]), 16)
        s = int(str(signature["s"]), 16)
        v = int(signature["v"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("signature: expected hex r, s and an integer v") from None
    recid = v - 27 if v >= 27 else v
    if recid not in (0, 1) or not (0 < r < _N and 0 < s < _N):
        raise ValueError("signature: out of range")
    try:
        import coincurve

        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([recid])
        pub = coincurve.PublicKey.from_signature_and_message(sig, digest, hasher=None).format(compressed=False)[1:]
    except ImportError:  # pragma: no cover - coincurve ships with ccxt
        pub = _recover_pure(digest, r, s, recid)
    except Exception as e:
        raise ValueError(f"signature: {e}") from None
    return "0x" + keccak(pub)[-20:].hex()
