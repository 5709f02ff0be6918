"""Full-size configuration dicts, as the hub repos hold them, to build the architecture without a
download (benchmarks, shape tests). A real checkpoint's own config.json always takes precedence."""

from __future__ import annotations

from typing import Any

AUDIO_LOCATOR_TAG = "<|audioplaceholder|>"

# nvidia/canary-qwen-2.5b config.json, the fields inference reads (per shared/spec/canary-qwen.md).
CANARY_QWEN_2_5B: dict[str, Any] = {
    "pretrained_llm": "Qwen/Qwen3-1.7B",
    "pretrained_asr": "nvidia/canary-1b-flash",
    "pretrained_weights": True,
    "audio_locator_tag": AUDIO_LOCATOR_TAG,
    "prompt_format": "qwen",
    "lora": {
        "task_type": "CAUSAL_LM",
        "r": 128,
        "lora_alpha": 256,
        "lora_dropout": 0.01,
        "target_modules": ["q_proj", "v_proj"],
    },
    "perception": {
        "target": "nemo.collections.speechlm2.modules.perception.AudioPerceptionModule",
        "output_dim": 2048,
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": 16000,
            "normalize": "per_feature",
            "window_size": 0.025,
            "window_stride": 0.01,
            "window": "hann",
            "features": 128,
            "n_fft": 512,
            "log": True,
            "frame_splicing": 1,
            "dither": 1e-05,
            "pad_to": 0,
            "pad_value": 0.0,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": 128,
            "feat_out": -1,
            "n_layers": 32,
            "d_model": 1024,
            "subsampling": "dw_striding",
            "subsampling_factor": 8,
            "subsampling_conv_channels": 256,
            "causal_downsampling": False,
            "ff_expansion_factor": 4,
            "self_attention_model": "rel_pos",
            "n_heads": 8,
            "att_context_size": [-1, -1],
            "xscaling": False,
            "untie_biases": True,
            "pos_emb_max_len": 5000,
            "conv_kernel_size": 9,
            "conv_norm_type": "batch_norm",
            "conv_context_size": None,
            "dropout": 0.1,
            "dropout_pre_encoder": 0.1,
            "dropout_emb": 0.0,
            "dropout_att": 0.1,
        },
        "modality_adapter": {
            "_target_": "nemo.collections.speechlm2.modules.perception.IdentityConnector",
            "d_model": 1024,
        },
    },
}

# Qwen/Qwen3-1.7B config.json.
QWEN3_1_7B: dict[str, Any] = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 6144,
    "max_position_embeddings": 40960,
    "max_window_layers": 28,
    "model_type": "qwen3",
    "num_attention_heads": 16,
    "num_hidden_layers": 28,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
