//! Every op's backward against central finite differences in f64 (relative error ≤ 1e-6),
//! on several shapes including non-square ones and a batch of one.

mod support;

use support::tensors::{GRAD_TOL, away_from_zero, randn, store};
use tekfac::gradcheck::{GradCheckOptions, check_gradients, weighted_sum};
use tekfac::{ParamId, Result, Tape, Var};

/// Shapes `[rows, cols]` every unary/binary op is checked on.
const SHAPES: [[usize; 2]; 4] = [[1, 1], [1, 5], [3, 4], [6, 2]];

fn check(ps: &tekfac::ParamStore<f64>, f: impl Fn(&mut Tape<'_, f64>) -> Result<Var>) {
    let r = check_gradients(ps, f, GradCheckOptions::default()).unwrap();
    assert!(
        r.max_rel_error <= GRAD_TOL,
        "relative error {} in {} ({} coords)",
        r.max_rel_error,
        r.worst,
        r.coords
    );
}

fn p(i: usize) -> ParamId {
    ParamId(i)
}

#[test]
fn unary_ops_match_finite_differences() {
    for (s, [r, c]) in SHAPES.iter().enumerate() {
        let x = away_from_zero(randn(&[*r, *c], s as u64), 1e-3);
        let ps = store(vec![x]);
        type Unary = fn(&mut Tape<'_, f64>, Var) -> Var;
        let ops: [(&str, Unary); 5] = [
            ("relu", |t, x| t.relu(x)),
            ("tanh", |t, x| t.tanh(x)),
            ("sigmoid", |t, x| t.sigmoid(x)),
            ("scale", |t, x| t.scale(x, -2.5)),
            ("add_scalar", |t, x| t.add_scalar(x, 0.75)),
        ];
        for (name, op) in ops {
            let f = |t: &mut Tape<'_, f64>| {
                let x = t.param(p(0));
                let y = op(t, x);
                weighted_sum(t, y, 7)
            };
            let rep = check_gradients(&ps, f, GradCheckOptions::default()).unwrap();
            assert!(
                rep.max_rel_error <= GRAD_TOL,
                "{name} on {r}x{c}: {}",
                rep.max_rel_error
            );
        }
    }
}

#[test]
fn binary_ops_same_shape_and_row_broadcast() {
    for (s, [r, c]) in SHAPES.iter().enumerate() {
        for broadcast in [false, true] {
            let b_dims: Vec<usize> = if broadcast { vec![*c] } else { vec![*r, *c] };
            let ps = store(vec![
                randn(&[*r, *c], 10 + s as u64),
                randn(&b_dims, 20 + s as u64),
            ]);
            for which in 0..3 {
                check(&ps, |t| {
                    let (a, b) = (t.param(p(0)), t.param(p(1)));
                    let y = match which {
                        0 => t.add(a, b)?,
                        1 => t.sub(a, b)?,
                        _ => t.mul(a, b)?,
                    };
                    weighted_sum(t, y, 3)
                });
            }
        }
    }
}

#[test]
fn matmul_all_transposes() {
    let (m, k, n) = (3, 4, 2);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = randn(&if ta { [k, m] } else { [m, k] }, 1);
        let b = randn(&if tb { [n, k] } else { [k, n] }, 2);
        let ps = store(vec![a, b]);
        check(&ps, |t| {
            let (a, b) = (t.param(p(0)), t.param(p(1)));
            let y = t.matmul_t(a, ta, b, tb)?;
            weighted_sum(t, y, 4)
        });
    }
}

#[test]
fn dense_with_and_without_bias() {
    for (n, d_in, d_out) in [(1, 3, 2), (4, 5, 3), (2, 1, 6)] {
        for bias in [false, true] {
            let mut ts = vec![randn(&[n, d_in], 1), randn(&[d_out, d_in], 2)];
            if bias {
                ts.push(randn(&[d_out], 3));
            }
            let ps = store(ts);
            check(&ps, |t| {
                let (x, w) = (t.param(p(0)), t.param(p(1)));
                let b = bias.then(|| t.param(p(2)));
                let y = t.dense(x, w, b, None)?;
                weighted_sum(t, y, 5)
            });
        }
    }
}

#[test]
fn log_softmax_sum_mean_reshape() {
    for (s, [r, c]) in SHAPES.iter().enumerate() {
        let ps = store(vec![randn(&[*r, *c], 30 + s as u64)]);
        check(&ps, |t| {
            let x = t.param(p(0));
            let y = t.log_softmax(x)?;
            weighted_sum(t, y, 6)
        });
        check(&ps, |t| {
            let x = t.param(p(0));
            let y = t.reshape(x, &[*c, *r])?;
            let y = t.tanh(y);
            Ok(t.mean(y))
        });
        check(&ps, |t| {
            let x = t.param(p(0));
            let y = t.sigmoid(x);
            Ok(t.sum(y))
        });
    }
}

#[test]
fn losses_match_finite_differences() {
    for (s, [n, c]) in [[1usize, 3], [4, 5], [6, 2]].iter().enumerate() {
        let ps = store(vec![randn(&[*n, *c], 40 + s as u64).scale(3.0)]);
        let labels: Vec<usize> = (0..*n).map(|i| (i * 7 + 1) % c).collect();
        check(&ps, |t| {
            let x = t.param(p(0));
            t.cross_entropy(x, &labels)
        });
        let targets = randn(&[*n, *c], 50).map(|v| if v > 0.0 { 1.0 } else { 0.0 });
        check(&ps, |t| {
            let x = t.param(p(0));
            t.bce_with_logits(x, &targets)
        });
        let soft = randn(&[*n, *c], 51).map(|v| 1.0 / (1.0 + (-v).exp()));
        check(&ps, |t| {
            let x = t.param(p(0));
            t.bce_with_logits(x, &soft)
        });
        let target = randn(&[*n, *c], 52);
        check(&ps, |t| {
            let x = t.param(p(0));
            t.mse(x, &target)
        });
    }
}

#[test]
fn two_layer_mlp_end_to_end() {
    let ps = store(vec![
        randn(&[5, 4], 1),
        randn(&[3, 5], 2),
        randn(&[3], 3),
        randn(&[5], 4),
    ]);
    let x = away_from_zero(randn(&[3, 4], 9), 0.0);
    check(&ps, |t| {
        let xv = t.input(x.clone());
        let (w1, b1, w2, b2) = (t.param(p(0)), t.param(p(3)), t.param(p(1)), t.param(p(2)));
        let h = t.dense(xv, w1, Some(b1), None)?;
        let h = t.tanh(h);
        let y = t.dense(h, w2, Some(b2), None)?;
        t.cross_entropy(y, &[0, 2, 1])
    });
}

#[test]
fn gradcheck_catches_a_wrong_derivative() {
    // Negative control: a "gradient" from the wrong function must fail the check. We compare
    // d/dx sum(tanh x) from the tape against differences of sum(sigmoid x) by hand.
    let ps = store(vec![randn(&[2, 3], 1)]);
    let mut tape = Tape::new(&ps);
    let x = tape.param(p(0));
    let y = tape.tanh(x);
    let l = tape.sum(y);
    let g = tape.backward(l).unwrap().grads;
    let g = g.get(p(0)).unwrap();
    let x0 = ps.get(p(0));
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let numeric: Vec<f64> = x0
        .data()
        .iter()
        .map(|&v| (sig(v + 1e-6) - sig(v - 1e-6)) / 2e-6)
        .collect();
    let diff: f64 = g
        .data()
        .iter()
        .zip(&numeric)
        .map(|(a, n)| (a - n).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(diff > 1e-2, "a wrong derivative must be detected");
}
