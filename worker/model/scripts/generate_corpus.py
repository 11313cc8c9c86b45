#!/usr/bin/env python3
"""Regenerate the bundled tokenized corpus in worker/data/bundled/.

Source texts (all public domain): three classic works that the Canterbury
compression corpus redistributes and that the Brotli source distribution on
PyPI ships as test data (Brotli-1.1.0/tests/testdata/):

* alice29.txt  - Lewis Carroll, "Alice's Adventures in Wonderland" (1865),
                 Project Gutenberg "Millennium Fulcrum Edition 2.9".
* asyoulik.txt - William Shakespeare, "As You Like It" (c. 1599).
* plrabn12.txt - John Milton, "Paradise Lost" (1667), Project Gutenberg 1992
                 release (the Gutenberg introduction before "Book I" is dropped).

Usage (needs network access to PyPI only, or a local copy of the sdist):

    python3 -m venv /tmp/corpus-venv
    /tmp/corpus-venv/bin/pip install tokenizers==0.23.3
    /tmp/corpus-venv/bin/python worker/model/scripts/generate_corpus.py \
        [--sdist Brotli-1.1.0.tar.gz] [--out worker/data/bundled]

Output: tokenizer.json (byte-level BPE, vocab 2048, "<|endoftext|>" = id 0 is
the EOS / document separator), flat little-endian uint16 token shards
(train-0000N.bin, val-00000.bin; every document is followed by one EOS token)
and metadata.json describing them.
"""

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

BROTLI_VERSION = "1.1.0"
VOCAB_SIZE = 2048
EOS = "<|endoftext|>"
TRAIN_SHARDS = 2

# sha256 of the raw texts inside the sdist: regeneration refuses different input.
SOURCES = [
    {
        "file": "alice29.txt",
        "title": "Alice's Adventures in Wonderland",
        "author": "Lewis Carroll",
        "year": 1865,
        "sha256": "7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0",
        "split": r"^\s*CHAPTER [IVXL]+\s*$",
    },
    {
        "file": "asyoulik.txt",
        "title": "As You Like It",
        "author": "William Shakespeare",
        "year": 1599,
        "sha256": "eaa3526fe53859f34ecdf255712f9ecf0b2c903451d4755b2edaa2e2599cb0fc",
        "split": r"^\s*ACT [IVX]+\s*$",
    },
    {
        "file": "plrabn12.txt",
        "title": "Paradise Lost",
        "author": "John Milton",
        "year": 1667,
        "sha256": "07e2e0b461af78c7c647cb53dab39de560198e16f799b4516eccf0fbd69f764c",
        "split": r"^\s*Book [IVX]+\s*$",
    },
]
LICENCE = "public domain (author died more than 150 years ago; no copyright subsists)"


def fetch_sdist(dest: str) -> str:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         f"brotli=={BROTLI_VERSION}", "-d", dest],
        check=True,
    )
    for name in os.listdir(dest):
        if name.lower().startswith("brotli-") and name.endswith(".tar.gz"):
            return os.path.join(dest, name)
    raise SystemExit("Brotli sdist not found after pip download")


def read_member(sdist: str, name: str) -> bytes:
    with tarfile.open(sdist) as tar:
        member = tar.getmember(f"Brotli-{BROTLI_VERSION}/tests/testdata/{name}")
        handle = tar.extractfile(member)
        assert handle is not None
        return handle.read()


def normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n"


def documents(source: dict, raw: bytes) -> list:
    text = raw.decode("ascii")
    if source["file"] == "plrabn12.txt":
        start = re.search(r"^Book I\s*$", text, flags=re.M)
        assert start is not None
        text = text[start.start():]
        text = text.replace("[The End]", "")
    pattern = re.compile(source["split"], flags=re.M)
    starts = [m.start() for m in pattern.finditer(text)]
    assert starts, source["file"]
    pieces = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
    return [normalise(p) for p in pieces if p.strip()]


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--sdist", help="path to Brotli-1.1.0.tar.gz (downloaded if absent)")
    parser.add_argument("--out", default=os.path.join(here, "..", "..", "data", "bundled"))
    args = parser.parse_args()

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or fetch_sdist(tmp)
        docs_by_source = []
        for source in SOURCES:
            raw = read_member(sdist, source["file"])
            digest = hashlib.sha256(raw).hexdigest()
            if digest != source["sha256"]:
                raise SystemExit(f"{source['file']}: sha256 {digest} != {source['sha256']}")
            docs_by_source.append(documents(source, raw))

    # The last document of each work is held out for validation.
    train_docs, val_docs = [], []
    for docs in docs_by_source:
        train_docs.extend(docs[:-1])
        val_docs.append(docs[-1])

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(train_docs + val_docs, trainer=trainer)
    eos_id = tokenizer.token_to_id(EOS)
    assert eos_id == 0
    vocab = tokenizer.get_vocab_size()
    assert vocab <= 65535

    def encode(docs: list) -> list:
        ids = []
        for doc in docs:
            ids.extend(tokenizer.encode(doc).ids)
            ids.append(eos_id)
        return ids

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    tokenizer.save(os.path.join(out, "tokenizer.json"))

    def write(name: str, ids: list) -> dict:
        data = b"".join(int(t).to_bytes(2, "little") for t in ids)
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        return {"file": name, "tokens": len(ids), "sha256": hashlib.sha256(data).hexdigest()}

    train_ids = encode(train_docs)
    per_shard = -(-len(train_ids) // TRAIN_SHARDS)
    train = [write(f"train-{i:05d}.bin", train_ids[i * per_shard:(i + 1) * per_shard])
             for i in range(TRAIN_SHARDS)]
    val = [write("val-00000.bin", encode(val_docs))]

    metadata = {
        "format": "flat-uint16-le",
        "vocab_size": vocab,
        "eos_id": eos_id,
        "eos_token": EOS,
        "tokenizer": "tokenizer.json",
        "tokenizer_model": f"byte-level BPE trained with HF tokenizers {__import__('tokenizers').__version__}",
        "documents": {"train": len(train_docs), "val": len(val_docs)},
        "shards": {"train": train, "val": val},
        "sources": [
            {k: s[k] for k in ("title", "author", "year", "file", "sha256")}
            | {"licence": LICENCE,
               "obtained_from": f"PyPI sdist Brotli=={BROTLI_VERSION}, tests/testdata/{s['file']} (Canterbury corpus)"}
            for s in SOURCES
        ],
        "generator": "worker/model/scripts/generate_corpus.py",
    }
    with open(os.path.join(out, "metadata.json"), "w") as f:
        json.dump(metadata, f, indent=2)
        f.write("\n")
    print(json.dumps({k: metadata[k] for k in ("vocab_size", "eos_id", "documents")}),
          [s["tokens"] for s in train + val])


if __name__ == "__main__":
    main()
