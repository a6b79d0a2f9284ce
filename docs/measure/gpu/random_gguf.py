"""Write a GGUF with Llama-3.2-1B's shape and random Q8_0 weights, to measure what a
verification batch costs on a model of the size people run (the weights' values do not
change the cost). Uses the gguf-py that llama.cpp vendors: pass its folder.

    python docs/measure/gpu/random_gguf.py --gguf-py .../vendor/llama.cpp/gguf-py OUT.gguf
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

# Llama-3.2-1B (config.json of meta-llama/Llama-3.2-1B-Instruct)
SHAPE = dict(n_embd=2048, n_layer=16, n_head=32, n_head_kv=8, n_ff=8192, n_vocab=128256,
             rope_theta=500000.0, ctx=131072, eps=1e-5)
Q8_BLOCK, Q8_BYTES = 32, 34  # 32 weights: an f16 scale and 32 int8


def q8_0(rng, rows: int, cols: int) -> np.ndarray:
    """Random Q8_0 rows, built as bytes (no float tensor, no quantizer: seconds, not
    minutes, for a billion weights)."""
    blocks = rng.integers(-127, 128, size=(rows, cols // Q8_BLOCK, Q8_BYTES), dtype=np.int8)
    blocks = blocks.view(np.uint8)
    blocks[..., :2] = np.frombuffer(np.float16(0.02).tobytes(), np.uint8)
    return blocks.reshape(rows, cols // Q8_BLOCK * Q8_BYTES)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--gguf-py", required=True)
    ap.add_argument("--layers", type=int, default=SHAPE["n_layer"],
                    help="fewer layers for a quick dry run")
    args = ap.parse_args()
    sys.path.insert(0, args.gguf_py)
    import gguf

    s = dict(SHAPE, n_layer=args.layers)
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(args.out, "llama")
    w.add_name("random Llama-3.2-1B shape")
    w.add_context_length(s["ctx"])
    w.add_embedding_length(s["n_embd"])
    w.add_block_count(s["n_layer"])
    w.add_feed_forward_length(s["n_ff"])
    w.add_head_count(s["n_head"])
    w.add_head_count_kv(s["n_head_kv"])
    w.add_rope_freq_base(s["rope_theta"])
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_rope_dimension_count(s["n_embd"] // s["n_head"])
    w.add_vocab_size(s["n_vocab"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    # a byte-level SentencePiece-style vocabulary: 256 byte tokens, then placeholders
    toks = [f"<0x{i:02X}>".encode() for i in range(256)]
    toks += [f"t{i}".encode() for i in range(256, s["n_vocab"])]
    types = [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (s["n_vocab"] - 256)
    types[1] = types[2] = gguf.TokenType.CONTROL
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * s["n_vocab"])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    d, kv = s["n_embd"], s["n_embd"] // s["n_head"] * s["n_head_kv"]
    q8 = gguf.GGMLQuantizationType.Q8_0

    def add(name: str, rows: int, cols: int) -> None:
        w.add_tensor(name, q8_0(rng, rows, cols), raw_dtype=q8)  # shape in bytes

    add("token_embd.weight", s["n_vocab"], d)  # tied: the output layer reads it too
    w.add_tensor("output_norm.weight", np.ones(d, np.float32))
    for i in range(s["n_layer"]):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(d, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(d, np.float32))
        add(f"blk.{i}.attn_q.weight", d, d)
        add(f"blk.{i}.attn_k.weight", kv, d)
        add(f"blk.{i}.attn_v.weight", kv, d)
        add(f"blk.{i}.attn_output.weight", d, d)
        add(f"blk.{i}.ffn_gate.weight", s["n_ff"], d)
        add(f"blk.{i}.ffn_up.weight", s["n_ff"], d)
        add(f"blk.{i}.ffn_down.weight", d, s["n_ff"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
