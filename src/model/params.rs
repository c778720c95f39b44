//! The parameter table: every tensor's Hugging Face GPT-2 name, shape (Conv1D weights are
//! (in, out)), initialisation and weight-decay flag. Its order is the flat layout shared by
//! parameters, gradients and AdamW moments.

use super::config::GptConfig;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Normal(f32),
    Zeros,
    Ones,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
    /// Weight decay applies to tensors with two or more dimensions (matrices and embeddings),
    /// not to biases or LayerNorm, as in GPT-2/nanoGPT and the reference fixture.
    pub decay: bool,
}

impl ParamSpec {
    fn new(name: String, shape: &[usize], init: Init) -> Self {
        ParamSpec { name, decay: shape.len() >= 2, shape: shape.to_vec(), init }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Model order (embeddings, blocks, final LayerNorm), as Hugging Face lists them.
pub fn param_table(cfg: &GptConfig) -> Vec<ParamSpec> {
    let (v, t, c) = (cfg.vocab_size, cfg.block_size, cfg.n_embd);
    // GPT-2: residual projections get std 0.02/sqrt(2L) so the residual stream does not grow with depth.
    let std = 0.02;
    let proj_std = std / (2.0 * cfg.n_layer as f32).sqrt();
    let mut p = vec![
        ParamSpec::new("transformer.wte.weight".into(), &[v, c], Init::Normal(std)),
        ParamSpec::new("transformer.wpe.weight".into(), &[t, c], Init::Normal(std)),
    ];
    for l in 0..cfg.n_layer {
        let h = |s: &str| format!("transformer.h.{l}.{s}");
        p.push(ParamSpec::new(h("ln_1.weight"), &[c], Init::Ones));
        p.push(ParamSpec::new(h("ln_1.bias"), &[c], Init::Zeros));
        p.push(ParamSpec::new(h("attn.c_attn.weight"), &[c, 3 * c], Init::Normal(std)));
        p.push(ParamSpec::new(h("attn.c_attn.bias"), &[3 * c], Init::Zeros));
        p.push(ParamSpec::new(h("attn.c_proj.weight"), &[c, c], Init::Normal(proj_std)));
        p.push(ParamSpec::new(h("attn.c_proj.bias"), &[c], Init::Zeros));
        p.push(ParamSpec::new(h("ln_2.weight"), &[c], Init::Ones));
        p.push(ParamSpec::new(h("ln_2.bias"), &[c], Init::Zeros));
        p.push(ParamSpec::new(h("mlp.c_fc.weight"), &[c, 4 * c], Init::Normal(std)));
        p.push(ParamSpec::new(h("mlp.c_fc.bias"), &[4 * c], Init::Zeros));
        p.push(ParamSpec::new(h("mlp.c_proj.weight"), &[4 * c, c], Init::Normal(proj_std)));
        p.push(ParamSpec::new(h("mlp.c_proj.bias"), &[c], Init::Zeros));
    }
    p.push(ParamSpec::new("transformer.ln_f.weight".into(), &[c], Init::Ones));
    p.push(ParamSpec::new("transformer.ln_f.bias".into(), &[c], Init::Zeros));
    p
}
