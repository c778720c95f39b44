//! WGSL sources (compiled into the binary with `include_str!`), the per-target prelude, and
//! naga reflection: which bindings each entry point really uses, so bind group layouts are exact.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// One WGSL file in `shaders/` per op family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Embedding,
    LayerNorm,
    Matmul,
    /// `matmul.wgsl` with the subgroup variant appended (needs the SUBGROUP feature).
    MatmulSubgroup,
    /// `matmul.wgsl` with the cooperative-matrix variant appended (needs
    /// EXPERIMENTAL_COOPERATIVE_MATRIX and SHADER_F16).
    MatmulCoop,
    Attention,
    /// `attention.wgsl` with the `shared` variant appended (needs the SUBGROUP feature).
    AttentionShared,
    /// The O(T^2) reference attention (tests only).
    AttentionUnfused,
    Gelu,
    Residual,
    Xent,
    AdamW,
    Reduce,
    /// Generation with a KV cache: embedding at a position, attention over the cache, sampling.
    Decode,
    /// Products of a few rows (generation's linears and lm_head at one position).
    Gemv,
}

impl Family {
    pub const ALL: [Family; 15] = [
        Family::Embedding,
        Family::LayerNorm,
        Family::Matmul,
        Family::MatmulSubgroup,
        Family::MatmulCoop,
        Family::Attention,
        Family::AttentionShared,
        Family::AttentionUnfused,
        Family::Gelu,
        Family::Residual,
        Family::Xent,
        Family::AdamW,
        Family::Reduce,
        Family::Decode,
        Family::Gemv,
    ];

    pub fn file(self) -> &'static str {
        match self {
            Family::Embedding => "embedding.wgsl",
            Family::LayerNorm => "layernorm.wgsl",
            Family::Matmul => "matmul.wgsl + gelu_fn.wgsl",
            Family::MatmulSubgroup => "matmul.wgsl + matmul_subgroup.wgsl + gelu_fn.wgsl",
            Family::MatmulCoop => "matmul.wgsl + matmul_coop.wgsl + gelu_fn.wgsl",
            Family::Attention => "attention.wgsl + attention_own.wgsl + attention_tiled.wgsl",
            Family::AttentionShared => "attention.wgsl + attention_shared.wgsl",
            Family::AttentionUnfused => "attention_unfused.wgsl",
            Family::Gelu => "gelu.wgsl + gelu_fn.wgsl",
            Family::Residual => "residual.wgsl",
            Family::Xent => "xent.wgsl",
            Family::AdamW => "adamw.wgsl",
            Family::Reduce => "reduce.wgsl",
            Family::Decode => "decode.wgsl",
            Family::Gemv => "gemv.wgsl + gelu_fn.wgsl",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Family::Embedding => include_str!("../../shaders/embedding.wgsl"),
            Family::LayerNorm => include_str!("../../shaders/layernorm.wgsl"),
            // Appended files keep the first file's line numbers right in error messages.
            Family::Matmul => {
                concat!(include_str!("../../shaders/matmul.wgsl"), include_str!("../../shaders/gelu_fn.wgsl"))
            }
            Family::MatmulSubgroup => concat!(
                include_str!("../../shaders/matmul.wgsl"),
                include_str!("../../shaders/matmul_subgroup.wgsl"),
                include_str!("../../shaders/gelu_fn.wgsl")
            ),
            Family::MatmulCoop => concat!(
                include_str!("../../shaders/matmul.wgsl"),
                include_str!("../../shaders/matmul_coop.wgsl"),
                include_str!("../../shaders/gelu_fn.wgsl")
            ),
            Family::Attention => {
                concat!(
                    include_str!("../../shaders/attention.wgsl"),
                    include_str!("../../shaders/attention_own.wgsl"),
                    include_str!("../../shaders/attention_tiled.wgsl")
                )
            }
            Family::AttentionShared => {
                concat!(
                    include_str!("../../shaders/attention.wgsl"),
                    include_str!("../../shaders/attention_shared.wgsl")
                )
            }
            Family::AttentionUnfused => include_str!("../../shaders/attention_unfused.wgsl"),
            Family::Gelu => {
                concat!(include_str!("../../shaders/gelu.wgsl"), include_str!("../../shaders/gelu_fn.wgsl"))
            }
            Family::Residual => include_str!("../../shaders/residual.wgsl"),
            Family::Xent => include_str!("../../shaders/xent.wgsl"),
            Family::AdamW => include_str!("../../shaders/adamw.wgsl"),
            Family::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Family::Decode => include_str!("../../shaders/decode.wgsl"),
            Family::Gemv => {
                concat!(include_str!("../../shaders/gemv.wgsl"), include_str!("../../shaders/gelu_fn.wgsl"))
            }
        }
    }
}

/// Storage element type of float activations, gradients and the weights' compute copy. Kernels
/// declare those buffers as `array<st>` and compute in f32 (statistics, moments and master
/// weights are declared `f32` outright), so fp16 storage is a prelude change, not a rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StorageType {
    #[default]
    F32,
    /// Needs `wgpu::Features::SHADER_F16`.
    F16,
}

pub fn prelude(st: StorageType) -> &'static str {
    match st {
        StorageType::F32 => concat!("alias st = f32;\n", include_str!("../../shaders/common.wgsl")),
        StorageType::F16 => concat!("enable f16;\nalias st = f16;\n", include_str!("../../shaders/common.wgsl")),
    }
}

/// How an entry point uses one binding of group 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    Uniform,
    Storage { read_only: bool },
}

/// A parsed, validated family plus the bindings of each entry point.
pub struct Reflected {
    pub source: String,
    pub entries: BTreeMap<String, Vec<(u32, BindingKind)>>,
}

fn numbered(source: &str) -> String {
    source.lines().enumerate().map(|(i, l)| format!("{:4} | {l}\n", i + 1)).collect()
}

/// Parses and validates a family with naga. `entry` only names what was being compiled
/// when an error is reported.
pub fn reflect(family: Family, st: StorageType, entry: &str) -> Result<Reflected> {
    reflect_sized(family, st, &[], entry)
}

/// `reflect` with the `const NAME: u32 = ...;` declarations of `sizes` set to their values.
pub fn reflect_sized(family: Family, st: StorageType, sizes: &[(&str, u32)], entry: &str) -> Result<Reflected> {
    let mut body = family.source().to_string();
    for &(name, v) in sizes {
        let decl = format!("const {name}: u32 = ");
        let at = body.find(&decl).ok_or_else(|| Error::Shader {
            file: family.file().to_string(),
            entry: entry.to_string(),
            message: format!("no `{decl}...;` to size"),
            numbered_source: String::new(),
        })?;
        let end = at + body[at..].find(';').unwrap_or(decl.len());
        body.replace_range(at..end, &format!("{decl}{v}u"));
    }
    // `enable` directives must open the module: a family's own go before the prelude's code.
    let prelude = prelude(st);
    let mut enables = String::new();
    body = body
        .lines()
        .filter(|l| {
            let directive = l.trim_start().starts_with("enable ");
            if directive && !prelude.contains(l.trim()) {
                enables.push_str(l.trim());
                enables.push('\n');
            }
            !directive
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let source = format!("{enables}{prelude}{body}");
    reflect_source(family.file(), &source, entry)
}

pub fn reflect_source(file: &str, source: &str, entry: &str) -> Result<Reflected> {
    let fail = |message: String| Error::Shader {
        file: file.to_string(),
        entry: entry.to_string(),
        message,
        numbered_source: numbered(source),
    };
    let module = naga::front::wgsl::parse_str(source).map_err(|e| fail(e.emit_to_string_with_path(source, file)))?;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .map_err(|e| fail(e.emit_to_string_with_path(source, file)))?;
    let mut entries = BTreeMap::new();
    for (i, ep) in module.entry_points.iter().enumerate() {
        let fi = info.get_entry_point(i);
        let mut bindings = Vec::new();
        for (handle, var) in module.global_variables.iter() {
            let Some(rb) = &var.binding else { continue };
            if fi[handle].is_empty() {
                continue;
            }
            if rb.group != 0 {
                return Err(fail(format!("{}: only @group(0) is supported", ep.name)));
            }
            let kind = match var.space {
                naga::AddressSpace::Uniform => BindingKind::Uniform,
                naga::AddressSpace::Storage { access } => {
                    BindingKind::Storage { read_only: !access.contains(naga::StorageAccess::STORE) }
                }
                other => return Err(fail(format!("{}: unsupported binding space {other:?}", ep.name))),
            };
            bindings.push((rb.binding, kind));
        }
        bindings.sort_by_key(|b| b.0);
        entries.insert(ep.name.clone(), bindings);
    }
    if !entries.contains_key(entry) && !entry.is_empty() {
        return Err(fail(format!("no entry point named '{entry}'")));
    }
    Ok(Reflected { source: source.to_string(), entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_rewrite_their_declaration_and_an_unknown_one_is_an_error() {
        let r = reflect_sized(Family::Attention, StorageType::F32, &[("MAX_HS", 40)], "attention_forward").unwrap();
        assert!(r.source.contains("const MAX_HS: u32 = 40u;") && !r.source.contains("const MAX_HS: u32 = 128u;"));
        assert!(r.entries.contains_key("attention_backward_dkv"));
        let e = reflect_sized(Family::Attention, StorageType::F32, &[("NO_SUCH", 1)], "attention_forward");
        assert!(e.is_err_and(|e| e.to_string().contains("NO_SUCH")));
    }
}
