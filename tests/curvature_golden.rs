//! Golden numbers: fixed inputs whose curvature statistics, approximation errors and updates
//! were computed by an independent program and are written here as f64 literals. The identities
//! (`tests/curvature_identities_*.rs`) compare the library with itself and with `exact_fisher` of
//! the same capture, by relative errors, so they cannot see a wrong overall scale (a missing 1/N, a
//! factor 2 in δ, λ where √λ belongs, π inverted in K-FAC's damping); these numbers can.
//!
//! - `golden_statistics_of_a_3_2_3_net` and `golden_step_of_every_variant`: a 3-2-3 dense net
//!   (tanh, softmax cross-entropy), fixed weights and a batch of 4, with its loss, gradients,
//!   factors, δ, s*/Θ (fitted and re-seeded), errors ‖F − F̂‖_F and one optimizer step per variant,
//!   from `tests/golden/curvature_golden.py` (numpy, straight from the spec's definitions; its
//!   output is pasted below).
//! - `reference_numbers_of_identities_check_py`: the six (ā, g) samples of
//!   `shared/spec/identities_check.py` (seed 0) and its errors ‖F − F̂‖_F per variant.

mod support;

use nalgebra::DMatrix;
use support::curvature::{EXACT, capture, check, fitted, rel_err_scalar};
use support::nets::{Loss, Net, capture_of, fit, grad_block, param_block, seeded_only};
use tekfac::curvature::exact::exact_fisher;
use tekfac::curvature::{Variant, WarmStart};
use tekfac::nn::{Activation, Linear, Sequential};
use tekfac::optim::{DampingPolicy, NaturalGradient, NgConfig, Optimizer};
use tekfac::{FisherType, LayerId, ParamStore, Tensor};

/// One layer's numbers from `tests/golden/curvature_golden.py`. Matrices are row-major; `grad` and
/// `steps` are `[d_out, d_in + 1]` with the bias last; s*/Θ are sorted ascending (their order in
/// the eigenbasis is the eigensolver's); `errors` and `steps` are in the order K-FAC, EKFAC,
/// TKFAC, TEKFAC.
struct Golden {
    name: &'static str,
    grad: &'static [f64],
    a: &'static [f64],
    g: &'static [f64],
    phi_raw: &'static [f64],
    psi_raw: &'static [f64],
    delta: f64,
    trace_f: f64,
    s_star: &'static [f64],
    theta: &'static [f64],
    s_star_seed: &'static [f64],
    theta_seed: &'static [f64],
    errors: [f64; 4],
    steps: [&'static [f64]; 4],
}

/// The golden net's settings (also in the script; the labels are `Net::labels`, 1 0 2 1).
const X: [f64; 12] = [
    0.5, -1.2, 0.3, 1.1, 0.4, -0.7, -0.6, 0.9, 1.5, 0.2, -0.3, -1.0,
];
const FC1: [f64; 8] = [0.4, -0.3, 0.2, 0.1, -0.5, 0.6, 0.35, -0.2];
const FC2: [f64; 9] = [0.7, -0.4, 0.05, -0.3, 0.8, -0.1, 0.25, 0.45, 0.3];
const LAMBDA: f64 = 0.05;
const LR: f64 = 0.1;

// Output of `python3 tests/golden/curvature_golden.py`:
#[rustfmt::skip]
const LOSS: f64 = 1.3753789026886933;
#[rustfmt::skip]
const LAYERS: [Golden; 2] = [
    Golden {
        name: "fc1",
        grad: &[
            0.037152979256187005, -0.253878180619672, -0.13984098230459155,
            0.17640959694060399, 0.018733952361064544, 0.15017033632010168,
            0.023211254639589105, -0.10161414543125039,
        ],
        a: &[
            0.4650000000000001, -0.19, -0.43,
            0.3, -0.19, 0.625,
            0.25250000000000006, -0.049999999999999975, -0.43,
            0.25250000000000006, 0.9575, 0.025000000000000022,
            0.3, -0.049999999999999975, 0.025000000000000022,
            1.0,
        ],
        g: &[
            0.19363268785060866, -0.11982427620767187, -0.11982427620767187,
            0.0793990161907012,
        ],
        phi_raw: &[
            0.07581064985113628, -0.04222317498210028, -0.05343976606434679,
            0.10947813698793762, -0.04222317498210028, 0.13871420429634843,
            0.012572256799224399, -0.11871666957569077, -0.05343976606434679,
            0.012572256799224399, 0.18776905371354713, -0.14347129380547854,
            0.10947813698793762, -0.11871666957569077, -0.14347129380547854,
            0.27303170404130983,
        ],
        psi_raw: &[
            0.47622691446194154, -0.2936720857886775, -0.2936720857886775,
            0.1990986974404002,
        ],
        delta: 0.6753256119023417,
        trace_f: 0.6753256119023417,
        s_star: &[
            0.00038884445682573084, 0.0013018904230734576, 0.0051952373267860385,
            0.006059016803239963, 0.056681312445866126, 0.11012341795963561,
            0.12775610193760867, 0.36781979054930664,
        ],
        theta: &[
            0.0011827063675967382, 0.0028929064926989465, 0.004107756490707874,
            0.004759085930769036, 0.015261486005821858, 0.04208765196909969,
            0.14739101029416726, 0.45764300835147964,
        ],
        s_star_seed: &[
            0.00047807709446338637, 0.0018546711786293919, 0.0038757810257198304,
            0.005295136826041321, 0.034101403190760264, 0.13229433156531875,
            0.27646079046209676, 0.37770392672286207,
        ],
        theta_seed: &[
            0.00038368951575067745, 0.0008620417413180736, 0.002847380063855341,
            0.008849343960848528, 0.019636882420840204, 0.04411851672048058,
            0.14572633659790868, 0.4529014208813394,
        ],
        errors: [
            0.3093530737754764,
            0.25961591010320484,
            0.03607166829343705,
            0.03470044181438934,
        ],
        steps: [
            &[
                0.011973755438916503, 0.056204043082435796, 0.035011130083735374,
                -0.03493277517262932, -0.03473052528337902, -0.039335527078966114,
                0.01520645499146934, 0.02018109804765021,
            ],
            &[
                0.027525186569540838, 0.12053273271264149, 0.07664099294716797,
                -0.08943609843444113, -0.09377870513575952, -0.06134214307563718,
                0.06889499037739588, 0.03973280908611823,
            ],
            &[
                -0.010945934753723624, 0.06376116723842055, 0.04754292402125554,
                0.0006403703284209456, -0.04577811410843875, -0.02799683396634066,
                0.033167360344377006, 0.027665550784178906,
            ],
            &[
                0.017695341625169017, 0.1550690463961608, 0.11247246366329498,
                -0.00018253298179309008, -0.0884346933704303, -0.08127026240426422,
                0.0521111171377242, -0.01887354987983724,
            ],
        ],
    },
    Golden {
        name: "fc2",
        grad: &[
            0.06253716484038999, -0.08915670322792568, 0.18771261086935487,
            -0.15273632428742612, 0.37595335292627885, -0.28874103001002976,
            0.09019915944703612, -0.28679664969835317, 0.1010284191406749,
        ],
        a: &[
            0.11798534175862056, -0.19942286354831754, 0.21253545088554932,
            -0.19942286354831754, 0.5418220538090015, -0.32087644074187327,
            0.21253545088554932, -0.32087644074187327, 1.0,
        ],
        g: &[
            0.21467141627112696, -0.23643089456444868, 0.021759478293321758,
            -0.23643089456444868, 0.41814057281470535, -0.18170967825025663,
            0.021759478293321758, -0.18170967825025663, 0.15995019995693488,
        ],
        phi_raw: &[
            0.12778167320561284, -0.1909748522776269, 0.22092974887011088,
            -0.1909748522776269, 0.43811346054605976, -0.374601725897633,
            0.22092974887011088, -0.374601725897633, 0.7927621890427672,
        ],
        psi_raw: &[
            0.3646310822991731, -0.414566527280709, 0.04993544498153584,
            -0.414566527280709, 0.7292641063787557, -0.31469757909804674,
            0.04993544498153584, -0.31469757909804674, 0.2647621341165109,
        ],
        delta: 1.3586573227944398,
        trace_f: 1.3586573227944396,
        s_star: &[
            1.1316276691113238e-33, 1.30190229800974e-32, 6.829648344804317e-32,
            0.0003867185382201195, 0.033455296449486666, 0.09828283995809933,
            0.11858240832341896, 0.13686839463155587, 0.9710816648936589,
        ],
        theta: &[
            2.1274569843352206e-34, 1.7312820916242687e-33, 3.7526247183819374e-33,
            0.001004260612323516, 0.03199428920438961, 0.08679740830304077,
            0.12426624487603964, 0.13056486712139084, 0.9840302526772566,
        ],
        s_star_seed: &[
            6.297989297123262e-19, 8.184382430582022e-18, 2.569748268084134e-17,
            0.004868658211796485, 0.019143801085812057, 0.0632693370046484,
            0.19865429135251753, 0.2487781129333519, 0.7811183437114355,
        ],
        theta_seed: &[
            -6.64822892405828e-17, -1.2589320184140563e-17, -1.968265511364186e-18,
            0.006213631757106151, 0.026784918059607067, 0.03974331676539716,
            0.1713203364136831, 0.2098784240872507, 0.9047166957113958,
        ],
        errors: [
            0.3691023511395559,
            0.26532944702607175,
            0.2730083046295477,
            0.2181965350579715,
        ],
        steps: [
            &[
                -0.00597457626436627, -0.024708752698090426, -0.025461872683581008,
                0.01664708617119977, -0.05007983257490542, 0.012622066024574717,
                -0.010672509906833477, 0.07478858527299585, 0.01283980665900629,
            ],
            &[
                -0.022714514722069555, -0.004417397674701985, 0.004377265482260758,
                0.037910770886715656, -0.13172854159856193, -0.026893728558386704,
                -0.015196256164646055, 0.1361459392732638, 0.0225164630761259,
            ],
            &[
                -0.004120765548949554, -0.03415285446715912, -0.03156909904840839,
                0.012016417907171712, -0.05048631695876288, 0.0065192930457331905,
                -0.007895652358222146, 0.084639171425922, 0.025049806002675225,
            ],
            &[
                -0.019572018176457037, -0.012805593314216568, 0.005990553893663452,
                0.018590514744869262, -0.12125446020953923, -0.024586365022005903,
                0.0009815034315878246, 0.13406005352375558, 0.01859581112834256,
            ],
        ],
    },
];

/// Fc1 3→2, tanh, fc2 2→3 with the golden weights, softmax cross-entropy.
fn golden_net() -> Net {
    let mut ps = ParamStore::seeded(0);
    let model = Sequential::new()
        .push(Linear::new(&mut ps, "fc1", 3, 2, true).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(&mut ps, "fc2", 2, 3, true).unwrap());
    ps.set_block(LayerId(0), &FC1);
    ps.set_block(LayerId(1), &FC2);
    Net {
        ps,
        model,
        example: vec![3],
        outputs: 3,
        loss: Loss::CrossEntropy,
    }
}

/// `max |got − want| / max |want|`, checked against `tol`.
fn close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0.0_f64, |m, x| m.max(x.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0_f64, |m, (x, y)| m.max((x - y).abs()));
    check(what, err / scale, tol);
}

/// A matrix as its row-major entries.
fn entries(m: &DMatrix<f64>) -> Vec<f64> {
    m.transpose().as_slice().to_vec()
}

/// The entries of `m`, sorted ascending.
fn sorted(m: &DMatrix<f64>) -> Vec<f64> {
    let mut v = m.as_slice().to_vec();
    v.sort_by(f64::total_cmp);
    v
}

#[test]
fn golden_statistics_of_a_3_2_3_net() {
    let net = golden_net();
    let x = Tensor::from_vec(X.to_vec(), &[4, 3]).unwrap();
    let out = net.pass(&x, FisherType::Empirical);
    check("golden loss", rel_err_scalar(out.loss, LOSS), EXACT);
    for want in &LAYERS {
        let (info, name) = (net.info(want.name), want.name);
        let c = capture_of(&out, &net, name);
        close(
            &format!("{name}: ∇W̄"),
            &entries(&grad_block(&out.grads, &info, &net.ps)),
            want.grad,
            EXACT,
        );
        let kfac = fit(Variant::Kfac, &info, c);
        let tkfac = fit(Variant::Tkfac, &info, c);
        let (k, t) = (kfac.factors().unwrap(), tkfac.factors().unwrap());
        close(&format!("{name}: A"), &entries(&k.a_factor), want.a, EXACT);
        close(&format!("{name}: G"), &entries(&k.g_factor), want.g, EXACT);
        close(
            &format!("{name}: δΦ"),
            &entries(&t.a_factor),
            want.phi_raw,
            EXACT,
        );
        close(
            &format!("{name}: δΨ"),
            &entries(&t.g_factor),
            want.psi_raw,
            EXACT,
        );
        check(
            &format!("{name}: δ"),
            rel_err_scalar(t.trace_scale, want.delta),
            EXACT,
        );
        let f = exact_fisher(c).unwrap();
        check(
            &format!("{name}: tr F"),
            rel_err_scalar(f.trace(), want.trace_f),
            EXACT,
        );
        let diagonal = |v, seeded: bool| {
            let block = if seeded {
                seeded_only(v, &info, c)
            } else {
                fit(v, &info, c)
            };
            sorted(&block.eigenvalues().unwrap())
        };
        close(
            &format!("{name}: s*"),
            &diagonal(Variant::Ekfac, false),
            want.s_star,
            EXACT,
        );
        close(
            &format!("{name}: Θ"),
            &diagonal(Variant::Tekfac, false),
            want.theta,
            EXACT,
        );
        close(
            &format!("{name}: re-seeded s*"),
            &diagonal(Variant::Ekfac, true),
            want.s_star_seed,
            EXACT,
        );
        close(
            &format!("{name}: re-seeded Θ"),
            &diagonal(Variant::Tekfac, true),
            want.theta_seed,
            EXACT,
        );
        for (v, error) in Variant::ALL.into_iter().zip(want.errors) {
            let got = (&f - fit(v, &info, c).to_dense().unwrap()).norm();
            check(
                &format!("{name} {v}: ‖F − F̂‖_F"),
                rel_err_scalar(got, error),
                EXACT,
            );
        }
    }
}

/// One step of `variant` with λ = 0.05 and lr 0.1 on this batch's statistics alone (decay 0, a
/// refresh and re-scaling every step, exact eigensolver), no momentum, clipping or decay.
fn golden_config() -> NgConfig {
    NgConfig {
        lr: LR,
        damping: DampingPolicy::with_lambda(LAMBDA),
        momentum: 0.0,
        decay: 0.0,
        stats_interval: 1,
        eigen_interval: 1,
        scale_interval: 1,
        kl_clip: None,
        weight_decay: 0.0,
        fisher: FisherType::Empirical,
        eigenbasis_layers: false,
        warm_start: WarmStart::exact_only(),
        ..Default::default()
    }
}

#[test]
fn golden_step_of_every_variant() {
    let x = Tensor::from_vec(X.to_vec(), &[4, 3]).unwrap();
    for (i, v) in Variant::ALL.into_iter().enumerate() {
        let mut net = golden_net();
        let before: Vec<DMatrix<f64>> = (net.ps.layers().iter())
            .map(|l| param_block(l, &net.ps))
            .collect();
        let out = net.pass(&x, FisherType::Empirical);
        let mut opt = NaturalGradient::new(v, golden_config(), &net.ps).unwrap();
        opt.step(&mut net.ps, &out).unwrap();
        for (want, before) in LAYERS.iter().zip(&before) {
            let info = net.info(want.name);
            let step = param_block(&info, &net.ps) - before;
            close(
                &format!("{} {v}: Δθ", want.name),
                &entries(&step),
                want.steps[i],
                EXACT,
            );
        }
    }
}

/// Cross-check against `shared/spec/identities_check.py`: its six (ā, g) samples (seed 0) and
/// its Frobenius errors ‖F − ·‖ for the four variants (invariant under its cvec ordering).
#[test]
fn reference_numbers_of_identities_check_py() {
    #[rustfmt::skip]
    let a = DMatrix::from_row_slice(6, 3, &[
        0.9417154046806644, -1.3965781047011498, 1.0,
        -1.016348894188071, -0.07212002278507135, 1.0,
        -1.3090373644593587, 0.1938877412491041, 1.0,
        -0.33366798379566953, 1.6456717605826776, 1.0,
        2.4041193322985697, -1.53108259287363, 1.0,
        -0.596962748085702, 1.503680882481937, 1.0,
    ]);
    #[rustfmt::skip]
    let g = DMatrix::from_row_slice(6, 2, &[
        -0.6797144480784211, 0.3705035674606598,
        0.5375894618245707, -2.4932976458129645,
        4.966248517675986, -3.234908152737524,
        -3.9122283609378936, -3.599096641369089,
        7.168192562641959, -18.03283665436264,
        13.435800543843392, -9.912321654349219,
    ]);
    let c = capture(&a, &[g], 1);
    let f = exact_fisher(&c).unwrap();
    check(
        "[ref] tr F",
        rel_err_scalar(f.trace(), 777.3962205220223),
        EXACT,
    );
    let reference = [
        (Variant::Kfac, 372.48013808007727),
        (Variant::Ekfac, 259.22415300929674),
        (Variant::Tkfac, 128.99726889009096),
        (Variant::Tekfac, 121.32595112480548),
    ];
    for (v, want) in reference {
        let err = (&f - fitted(v, &c).to_dense().unwrap()).norm();
        check(
            &format!("[ref] {v}: ‖F − F̂‖ = identities_check.py"),
            rel_err_scalar(err, want),
            EXACT,
        );
    }
}
