#!/usr/bin/python3
"""What the reference OpenTimestamps library (Debian python3-opentimestamps) says about a proof.

anchord's tests and demo use this as an independent second opinion on the .ots files anchord
writes: if the reference library cannot parse a proof, or finds another digest in it, the proof
is no good to a court whatever anchord thinks of it.

usage: /usr/bin/python3 check_ots.py PROOF.ots [ORIGINAL] [--digest HEX] [--roots FILE] [--strict]

Prints one JSON object and exits with:
  0  the proof parses and its file digest equals the original's (or --digest)
  1  the proof does not parse, or a file cannot be read
  2  the file digest differs from the original's (or --digest)
  3  the proof parses but there is nothing to compare its digest with
  4  (--strict) a Bitcoin attestation does not commit to the block's merkle root

--roots names a JSON file of known blocks, keyed by height: {"H": {"header_hex": 160 hex chars}}
or {"H": {"merkle_root_internal": 64 hex chars}}; keys starting with "_" are comments. A raw
header is handed to the reference verify_against_blockheader(); a bare root is compared byte for
byte. Without --roots, tests/data/ots/bitcoin_block_roots.json of this repository is used.
Without ORIGINAL or --digest, PROOF minus ".ots" is the original when that file exists.
"""

import argparse
import json
import os
import sys

from opentimestamps.core import notary
from opentimestamps.core.serialize import (BytesDeserializationContext,
                                           BytesSerializationContext)
from opentimestamps.core.timestamp import DetachedTimestampFile

REPO_ROOTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, 'data', 'ots',
                          'bitcoin_block_roots.json')


def read_known_blocks(path):
    """Height -> entry; a missing file means nothing is known (every root stays 'unknown')."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        data = json.load(f)
    return {int(h): e for h, e in data.items() if not h.startswith('_') and isinstance(e, dict)}


def file_digest(op, path):
    # Calling the op on the bytes would stop at the library's 4096-byte message limit; a file is
    # hashed through hashlib under the op's own name instead (sha256, sha1, ripemd160).
    import hashlib
    with open(path, 'rb') as f:
        return hashlib.new(op.TAG_NAME, f.read()).digest()


def bitcoin_entry(msg, att, known):
    out = {'type': 'bitcoin', 'height': att.height, 'commitment_hex': msg.hex(),
           'root_check': 'unknown'}
    block = known.get(att.height)
    if block is None:
        return out
    if block.get('header_hex'):
        from bitcoin.core import CBlockHeader
        header = CBlockHeader.deserialize(bytes.fromhex(block['header_hex']))
        try:
            out['block_time'] = att.verify_against_blockheader(msg, header)
            out['root_check'] = 'match'
        except notary.VerificationError as e:
            out['root_check'] = 'mismatch'
            out['root_error'] = str(e)
    elif block.get('merkle_root_internal'):
        same = msg == bytes.fromhex(block['merkle_root_internal'])
        out['root_check'] = 'match' if same else 'mismatch'
    return out


def attestation_entry(msg, att, known):
    if isinstance(att, notary.BitcoinBlockHeaderAttestation):
        return bitcoin_entry(msg, att, known)
    if isinstance(att, notary.PendingAttestation):
        return {'type': 'pending', 'uri': att.uri, 'commitment_hex': msg.hex()}
    if isinstance(att, notary.LitecoinBlockHeaderAttestation):
        return {'type': 'litecoin', 'height': att.height, 'commitment_hex': msg.hex()}
    if isinstance(att, notary.UnknownAttestation):
        return {'type': 'unknown', 'tag_hex': att.TAG.hex(), 'payload_hex': att.payload.hex(),
                'commitment_hex': msg.hex()}
    return {'type': type(att).__name__, 'commitment_hex': msg.hex()}


def run(args):
    result = {'ok': False, 'proof': args.proof, 'digest': None, 'digest_matches': None,
              'reserialized_identical': None, 'attestations': [], 'error': None}
    try:
        with open(args.proof, 'rb') as f:
            raw = f.read()
        proof = DetachedTimestampFile.deserialize(BytesDeserializationContext(raw))
    except Exception as e:  # the library raises several unrelated types on bad input
        result['error'] = 'does not parse: %s: %s' % (type(e).__name__, e)
        return 1, result

    result['file_hash_op'] = proof.file_hash_op.TAG_NAME
    result['digest'] = proof.file_digest.hex()
    again = BytesSerializationContext()
    proof.serialize(again)
    result['reserialized_identical'] = again.getbytes() == raw

    known = read_known_blocks(args.roots)
    result['attestations'] = [attestation_entry(m, a, known)
                              for m, a in proof.timestamp.all_attestations()]
    bad_roots = sorted(a['height'] for a in result['attestations']
                       if a['type'] == 'bitcoin' and a['root_check'] == 'mismatch')
    result['root_mismatch_heights'] = bad_roots

    expected = None
    if args.digest is not None:
        expected = bytes.fromhex(args.digest)
    else:
        original = args.original
        if original is None and args.proof.endswith('.ots') and os.path.isfile(args.proof[:-4]):
            original = args.proof[:-4]
        if original is not None:
            result['original'] = original
            try:
                expected = file_digest(proof.file_hash_op, original)
            except OSError as e:
                result['error'] = 'cannot read %s: %s' % (original, e)
                return 1, result

    if expected is None:
        result['error'] = 'nothing to compare the file digest with (no original, no --digest)'
        return 3, result
    result['digest_matches'] = expected == proof.file_digest
    if not result['digest_matches']:
        result['error'] = 'the proof is for another digest'
        return 2, result
    if args.strict and bad_roots:
        result['error'] = 'not the merkle root of block(s) %s' % bad_roots
        return 4, result
    result['ok'] = True
    return 0, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('proof')
    parser.add_argument('original', nargs='?')
    parser.add_argument('--digest')
    parser.add_argument('--roots', default=REPO_ROOTS)
    parser.add_argument('--strict', action='store_true')
    rc, result = run(parser.parse_args())
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write('\n')
    return rc


if __name__ == '__main__':
    sys.exit(main())
