//! The benchmark tensor set, shared with `reference_torch.py` (keep them in sync):
//! two TinyLlama-1.1B decoder layers (hidden 2048, MLP 5632, 4 KV heads) and two
//! 150M-class layers (hidden 768, MLP 2048): 102.2 M parameters.

use worker_sparseloco::ParamSpec;

fn layer(prefix: &str, hidden: i64, mlp: i64, kv: i64) -> Vec<ParamSpec> {
    let p = |name: &str, shape: Vec<i64>| ParamSpec::new(format!("{prefix}.{name}"), shape);
    vec![
        p("self_attn.q_proj.weight", vec![hidden, hidden]),
        p("self_attn.k_proj.weight", vec![kv, hidden]),
        p("self_attn.v_proj.weight", vec![kv, hidden]),
        p("self_attn.o_proj.weight", vec![hidden, hidden]),
        p("mlp.gate_proj.weight", vec![mlp, hidden]),
        p("mlp.up_proj.weight", vec![mlp, hidden]),
        p("mlp.down_proj.weight", vec![hidden, mlp]),
        p("input_layernorm.weight", vec![hidden]),
        p("post_attention_layernorm.weight", vec![hidden]),
    ]
}

/// The ~100M-parameter LLaMA-shaped set.
pub fn bench_specs() -> Vec<ParamSpec> {
    let mut specs = Vec::new();
    for i in 0..2 {
        specs.extend(layer(&format!("llama1b.layers.{i}"), 2048, 5632, 256));
    }
    for i in 0..2 {
        specs.extend(layer(&format!("llama150m.layers.{i}"), 768, 2048, 768));
    }
    specs
}
