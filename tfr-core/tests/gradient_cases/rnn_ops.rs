//! Numeric gradient cases for BlockLSTM (through its `cs` and `h` outputs, the ones its
//! gradient covers, as in TensorFlow): with and without peepholes, over the whole sequence and
//! with `seq_len_max` below the time dim. Included by `tests/gradients.rs`.

use super::*;

/// Inputs x [3, 2, 2], cs_prev and h_prev [2, 3], w [5, 12], wci/wcf/wco [3], b [12].
fn lstm_inputs() -> Vec<In> {
    let small = Dist::Uniform(-0.8, 0.8);
    vec![
        inp(&[3, 2, 2], U),
        inp(&[2, 3], small),
        inp(&[2, 3], small),
        inp(&[5, 12], small),
        inp(&[3], small),
        inp(&[3], small),
        inp(&[3], small),
        inp(&[12], small),
    ]
}

pub(super) fn cases(_rng: &mut Rng) -> Vec<Case> {
    let mut cs = Vec::new();
    for (peephole, seq_len) in [(false, 3i64), (true, 3), (false, 2)] {
        let mut c = case(
            "BlockLSTM",
            format!("peephole {peephole}, seq_len_max {seq_len}"),
            lstm_inputs(),
            move |g, x| {
                let s = g.scalar(seq_len)?;
                let attrs = tfr_graph::ops::rnn_ops::BlockLstmAttrs {
                    forget_bias: 0.7,
                    cell_clip: -1.0,
                    use_peephole: peephole,
                };
                let r = g.block_lstm([s, x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]], attrs)?;
                Ok(vec![r.cs, r.h])
            },
        );
        // BlockLSTMGrad is not differentiable (as in TensorFlow).
        c.second_order = false;
        cs.push(c);
    }
    cs
}
