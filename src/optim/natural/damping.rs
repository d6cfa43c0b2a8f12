//! The damping policy of a whole network (spec §1.7): which [`Damping`] each curvature block
//! gets, given the variant, λ and the blocks' current diagonals. Network-level policy, so it
//! lives next to the optimizer; the per-block math (the damped diagonal of each mode, Eq. 3.5 of
//! one block) stays in `curvature/damping.rs`.
//!
//! | block | damping |
//! |---|---|
//! | K-FAC, any layer | factored Tikhonov with π, `λ` |
//! | TKFAC, any layer | TKFAC's normal damping, `λ` |
//! | EKFAC, any layer; TEKFAC dense layer in a dense network | additive `λ` |
//! | TEKFAC conv layer | additive `max(ΣΘ/dim Θ, ϑ/dim Θ, λ)` (Eq. 3.5, floored at λ by default) |
//! | TEKFAC dense layer in a CNN | additive `λ`, `β` or `β·λ` ([`DenseInCnn`]) |
//!
//! with `β = max over conv layers of their λ` (spec §6.3; how the paper applies β is \[U\]).
//!
//! **The rule** ([`DampingRule`], an option; default [`DampingRule::Own`], the table above)
//! keeps every block's λ and changes only how λ enters: [`DampingRule::Additive`] damps every
//! block as `D + λ`, [`DampingRule::FactoredShift`] as K-FAC damps its own diagonal,
//! `D + √λ(π u + v/π) + λ` ([`Damping::FactoredShift`]). They exist to compare the damping's
//! structure across the four variants (issue 18, docs/RESULTS.md §6).
//!
//! **λ's default** ([`default_lambda`]) is the value tuned on the embedded Fashion-MNIST subset
//! (docs/RESULTS.md), not the spec's 1e-3, which diverges within the first ten steps there while
//! the factors still come from a single batch: 0.1 for EKFAC and TEKFAC (λ is added to s*/Θ
//! alone); 0.03 for K-FAC and TKFAC on dense networks, whose factored damping adds cross terms,
//! and 0.1 on networks with conv layers, where 0.03 diverged by step 23 (the factored damping
//! splits √λ over conv factors of very different scales).
//!
//! **Conv floor** (`conv_at_least_lambda`, default on). The literal Eq. 3.5 with any trace
//! floor ϑ of the λ scale is `≈ mean(Θ)` on a real conv layer (≈ 1e-5 on the CNN preset's conv2,
//! since `ϑ/dim Θ ≈ 2e-8`), a hundred to ten thousand times smaller than the dense layers' λ:
//! conv directions that one sampled batch sees as flat then take steps of `η·∇/mean(Θ)`, and
//! TEKFAC with the CLI defaults diverged within 6 steps on the CNN preset. Flooring at λ keeps
//! the trace-adaptive rule where the curvature is large (`mean Θ > λ`) and otherwise damps conv
//! layers like dense ones. The literal rule stays available (`conv_at_least_lambda = false`).

use crate::curvature::{CurvatureBlock, Damping, Variant};

/// How TEKFAC damps dense layers in a network that also has conv layers (spec §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DenseInCnn {
    /// The fixed additive `λ`, like any dense layer (default: the conservative reading).
    #[default]
    Fixed,
    /// `λ_dense := β`.
    Beta,
    /// `λ_dense := β·λ`.
    BetaTimesLambda,
}

impl DenseInCnn {
    /// The λ of a dense layer in a CNN, given the fixed `λ` and `β`.
    pub fn lambda(self, lambda: f64, beta: f64) -> f64 {
        match self {
            DenseInCnn::Fixed => lambda,
            DenseInCnn::Beta => beta,
            DenseInCnn::BetaTimesLambda => beta * lambda,
        }
    }
}

/// How λ enters every block (module docs): each variant's own mode, or one mode for all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DampingRule {
    /// Each variant's own mode ([`Damping::for_variant`]): factored for K-FAC/TKFAC, additive
    /// for EKFAC/TEKFAC (default).
    #[default]
    Own,
    /// [`Damping::Additive`] for every variant: exactly `(F̂ + λI)⁻¹`.
    Additive,
    /// [`Damping::FactoredShift`] for every variant: K-FAC's direction-dependent damping.
    FactoredShift,
}

impl DampingRule {
    /// The damping of a block of `variant` with damping value `lambda` under this rule.
    pub fn damping(self, variant: Variant, lambda: f64) -> Damping {
        match self {
            DampingRule::Own => Damping::for_variant(variant, lambda),
            DampingRule::Additive => Damping::Additive(lambda),
            DampingRule::FactoredShift => Damping::FactoredShift(lambda),
        }
    }
}

/// The damping hyperparameters of spec §1.7 in one place (defaults in the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DampingPolicy {
    /// `λ`: additive on s*/Θ for EKFAC/TEKFAC, Tikhonov for K-FAC/TKFAC. `None`: the tuned
    /// default of the variant and network, [`default_lambda`].
    pub lambda: Option<f64>,
    /// `ϑ`, the floor of TEKFAC's conv damping `max(ΣΘ, ϑ)/dim Θ` (1e-3; the paper's is \[U\]).
    pub conv_floor: f64,
    /// Also floor TEKFAC's conv damping at `λ`: `max(ΣΘ/dim Θ, ϑ/dim Θ, λ)` (default true; the
    /// literal Eq. 3.5 when false). See the module docs for why.
    pub conv_at_least_lambda: bool,
    /// TEKFAC's dense layers inside a CNN ([`DenseInCnn::Fixed`]).
    pub dense_in_cnn: DenseInCnn,
    /// How λ enters every block ([`DampingRule::Own`]).
    pub rule: DampingRule,
}

impl DampingPolicy {
    /// The defaults: the tuned λ, `ϑ = 1e-3`, conv λ floored at λ, dense-in-CNN fixed, each
    /// variant's own damping rule.
    pub const DEFAULT: DampingPolicy = DampingPolicy {
        lambda: None,
        conv_floor: 1e-3,
        conv_at_least_lambda: true,
        dense_in_cnn: DenseInCnn::Fixed,
        rule: DampingRule::Own,
    };

    /// The defaults with a fixed `λ`.
    pub fn with_lambda(lambda: f64) -> Self {
        DampingPolicy {
            lambda: Some(lambda),
            ..Self::DEFAULT
        }
    }

    /// `λ` for `variant` on a network with or without conv layers: the configured value, else
    /// [`default_lambda`].
    pub fn lambda(&self, variant: Variant, has_conv: bool) -> f64 {
        self.lambda
            .unwrap_or_else(|| default_lambda(variant, has_conv))
    }

    /// The damping of every block of one network under `variant` (the table of the module
    /// docs): TEKFAC conv layers trace-adaptive, TEKFAC dense layers in a CNN per
    /// [`DenseInCnn`], everything else `λ`; each in the mode of [`rule`](Self::rule)
    /// ([`Damping::for_variant`] by default).
    pub fn per_block(&self, variant: Variant, blocks: &[CurvatureBlock]) -> Vec<Damping> {
        let has_conv = blocks.iter().any(CurvatureBlock::is_conv);
        let lambda = self.lambda(variant, has_conv);
        let lower = if self.conv_at_least_lambda {
            lambda
        } else {
            0.0
        };
        let conv_lambda = |b: &CurvatureBlock| b.trace_adaptive_damping(self.conv_floor).max(lower);
        let beta = beta(blocks.iter().filter(|b| b.is_conv()).map(conv_lambda));
        let mode = |lambda| self.rule.damping(variant, lambda);
        blocks
            .iter()
            .map(|b| match (variant, b.is_conv(), has_conv) {
                (Variant::Tekfac, true, _) => mode(conv_lambda(b)),
                (Variant::Tekfac, false, true) => mode(self.dense_in_cnn.lambda(lambda, beta)),
                _ => mode(lambda),
            })
            .collect()
    }
}

impl Default for DampingPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The tuned default `λ` of `variant` on a network with or without conv layers (module docs):
/// K-FAC/TKFAC 0.03 (0.1 with conv layers), EKFAC/TEKFAC 0.1.
pub fn default_lambda(variant: Variant, has_conv: bool) -> f64 {
    match (variant, has_conv) {
        (Variant::Kfac | Variant::Tkfac, false) => 0.03,
        _ => 0.1,
    }
}

/// `β = max over conv layers of their λ` (0 for a network without conv layers).
pub fn beta(conv_lambdas: impl IntoIterator<Item = f64>) -> f64 {
    conv_lambdas.into_iter().fold(0.0, f64::max)
}
