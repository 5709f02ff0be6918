"""Writes canary_qwen_2.5b_keys.txt: every tensor of nvidia/canary-qwen-2.5b's model.safetensors
with its shape, enumerated from the rules in shared/spec/canary-qwen.md (not from nemo_lite).

Sizes: encoder 32 layers, d_model 1024, 8 heads (d_head 128), ff x4, conv kernel 9, dw_striding x8
with 256 channels on 128 mels (128 -> 64 -> 32 -> 16 bins); projection 1024 -> 2048; Qwen3-1.7B with
28 layers, hidden 2048, 16 query / 8 KV heads of 128, intermediate 6144, vocab 151936; LoRA r 128
on q_proj and v_proj. Encoder Linear/Conv layers carry biases (NeMo's default use_bias=True) except
linear_pos; the tied lm_head is stored once as embed_tokens.weight.
Run: python make_canary_qwen_keys.py
"""

from __future__ import annotations

from pathlib import Path

D, FF, HEADS, K, C = 1024, 4096, 8, 9, 256
H, INTER, Q_HEADS, KV_HEADS, HEAD_DIM, VOCAB, R = 2048, 6144, 16, 8, 128, 151936, 128


def keys() -> list[tuple[str, tuple[int, ...]]]:
    out: list[tuple[str, tuple[int, ...]]] = [
        ("perception.preprocessor.featurizer.window", (400,)),
        ("perception.preprocessor.featurizer.fb", (1, 128, 257)),
    ]
    pre = "perception.encoder.pre_encode."
    out += [(pre + "conv.0.weight", (C, 1, 3, 3)), (pre + "conv.0.bias", (C,))]
    for dw, pw in ((2, 3), (5, 6)):
        out += [(f"{pre}conv.{dw}.weight", (C, 1, 3, 3)), (f"{pre}conv.{dw}.bias", (C,))]
        out += [(f"{pre}conv.{pw}.weight", (C, C, 1, 1)), (f"{pre}conv.{pw}.bias", (C,))]
    out += [(pre + "out.weight", (D, C * 16)), (pre + "out.bias", (D,))]
    for i in range(32):
        p = f"perception.encoder.layers.{i}."

        def norm(name: str, p: str = p) -> list[tuple[str, tuple[int, ...]]]:
            return [(f"{p}{name}.weight", (D,)), (f"{p}{name}.bias", (D,))]

        def ff(name: str, p: str = p) -> list[tuple[str, tuple[int, ...]]]:
            return [
                (f"{p}{name}.linear1.weight", (FF, D)),
                (f"{p}{name}.linear1.bias", (FF,)),
                (f"{p}{name}.linear2.weight", (D, FF)),
                (f"{p}{name}.linear2.bias", (D,)),
            ]

        out += norm("norm_feed_forward1") + ff("feed_forward1") + norm("norm_self_att")
        for lin in ("linear_q", "linear_k", "linear_v", "linear_out"):
            out += [(f"{p}self_attn.{lin}.weight", (D, D)), (f"{p}self_attn.{lin}.bias", (D,))]
        out += [(f"{p}self_attn.linear_pos.weight", (D, D))]
        out += [(f"{p}self_attn.pos_bias_{uv}", (HEADS, D // HEADS)) for uv in "uv"]
        out += norm("norm_conv")
        out += [
            (f"{p}conv.pointwise_conv1.weight", (2 * D, D, 1)),
            (f"{p}conv.pointwise_conv1.bias", (2 * D,)),
            (f"{p}conv.depthwise_conv.weight", (D, 1, K)),
            (f"{p}conv.depthwise_conv.bias", (D,)),
        ]
        out += [
            (f"{p}conv.batch_norm.{n}", (D,))
            for n in ("weight", "bias", "running_mean", "running_var")
        ]
        out += [(f"{p}conv.batch_norm.num_batches_tracked", ())]
        out += [
            (f"{p}conv.pointwise_conv2.weight", (D, D, 1)),
            (f"{p}conv.pointwise_conv2.bias", (D,)),
        ]
        out += norm("norm_feed_forward2") + ff("feed_forward2") + norm("norm_out")
    out += [("perception.proj.weight", (H, D)), ("perception.proj.bias", (H,))]
    out += [("embed_tokens.weight", (VOCAB, H))]
    for i in range(28):
        p = f"llm.base_model.model.model.layers.{i}."
        out += [(p + "input_layernorm.weight", (H,)), (p + "post_attention_layernorm.weight", (H,))]
        q, kv = Q_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
        for name, rows in (("q_proj", q), ("v_proj", kv)):
            out += [
                (f"{p}self_attn.{name}.base_layer.weight", (rows, H)),
                (f"{p}self_attn.{name}.lora_A.default.weight", (R, H)),
                (f"{p}self_attn.{name}.lora_B.default.weight", (rows, R)),
            ]
        out += [(p + "self_attn.k_proj.weight", (kv, H)), (p + "self_attn.o_proj.weight", (H, q))]
        out += [
            (p + "self_attn.q_norm.weight", (HEAD_DIM,)),
            (p + "self_attn.k_norm.weight", (HEAD_DIM,)),
        ]
        out += [
            (p + "mlp.gate_proj.weight", (INTER, H)),
            (p + "mlp.up_proj.weight", (INTER, H)),
            (p + "mlp.down_proj.weight", (H, INTER)),
        ]
    out += [("llm.base_model.model.model.norm.weight", (H,))]
    return out


def main() -> None:
    lines = [f"{name} {','.join(map(str, shape))}" for name, shape in keys()]
    target = Path(__file__).with_name("canary_qwen_2.5b_keys.txt")
    target.write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} tensors -> {target}")


if __name__ == "__main__":
    main()
