//! Fits y = 3x + 2 by gradient descent written with plain graph ops (no autodiff yet):
//! a smoke test of graph building, variables, feeds and cached steps.

use tfr::prelude::*;

fn main() -> std::process::ExitCode {
    tfr::cli::report(run())
}

fn run() -> tfr::Result<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::new(vec![Dim::Sym("N".into())]))?;
    let y = g.placeholder("y", DType::F32, Shape::new(vec![Dim::Sym("N".into())]))?;
    let zero = g.scalar(0.0f32)?;
    let w = g.variable("w", zero)?;
    let b = g.variable("b", zero)?;
    // prediction and error
    let wx = g.mul(w.value, x)?;
    let pred = g.add(wx, b.value)?;
    let err = g.sub(pred, y)?;
    let sq = g.square(err)?;
    let loss = g.reduce_mean(sq, None, false)?;
    // d loss / dw = mean(2 err x), d loss / db = mean(2 err)
    let lr = g.scalar(0.1f32)?;
    let two = g.scalar(2.0f32)?;
    let ex = g.mul(err, x)?;
    let gw = g.reduce_mean(ex, None, false)?;
    let gw = g.mul(gw, two)?;
    let gb = g.reduce_mean(err, None, false)?;
    let gb = g.mul(gb, two)?;
    let dw = g.mul(gw, lr)?;
    let db = g.mul(gb, lr)?;
    let step_w = g.assign_sub(&w, dw)?;
    let step_b = g.assign_sub(&b, db)?;
    let train = g.group(&[step_w.node, step_b.node])?;
    let init = g.global_variables_initializer()?;

    let session = Session::new(&g, SessionOptions::default())?;
    session.run(&[], &[], &[init])?;
    let xs: Vec<f32> = (0..64).map(|i| i as f32 / 32.0 - 1.0).collect();
    let ys: Vec<f32> = xs.iter().map(|v| 3.0 * v + 2.0).collect();
    let (xt, yt) = (Tensor::new(&[64], xs)?, Tensor::new(&[64], ys)?);
    let step = session.make_callable(&[x, y], &[loss], &[train])?;
    for i in 0..200 {
        let l = step.call(&[xt.clone(), yt.clone()])?;
        if i % 50 == 0 {
            println!("step {i:3}: loss {:.6}", l[0].scalar_value::<f32>()?);
        }
    }
    let out = session.run(&[], &[w.value, b.value], &[])?;
    println!(
        "w = {:.4}, b = {:.4}",
        out[0].scalar_value::<f32>()?,
        out[1].scalar_value::<f32>()?
    );
    Ok(())
}
