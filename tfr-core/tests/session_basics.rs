use tfr_core::{Code, Error, Session, SessionOptions, Tensor};
use tfr_graph::{DType, Dim, Graph, Shape};

fn opts() -> SessionOptions {
    SessionOptions::default()
}

#[test]
fn add_two_fed_scalars() {
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::scalar()).unwrap();
    let b = g.placeholder("b", DType::F32, Shape::scalar()).unwrap();
    let c = g.add(a, b).unwrap();
    let s = Session::new(&g, opts()).unwrap();
    let out = s
        .run(
            &[(a, Tensor::scalar(1.5f32)), (b, Tensor::scalar(2.0f32))],
            &[c],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].scalar_value::<f32>().unwrap(), 3.5);
    let call = s.make_callable(&[a, b], &[c], &[]).unwrap();
    let out = call
        .call(&[Tensor::scalar(1.0f32), Tensor::scalar(2.0f32)])
        .unwrap();
    assert_eq!(out[0].scalar_value::<f32>().unwrap(), 3.0);
}

#[test]
fn broadcasting_chain_and_in_place() {
    let mut g = Graph::new();
    let x = g
        .placeholder(
            "x",
            DType::F32,
            Shape::new(vec![Dim::Sym("B".into()), Dim::Known(3)]),
        )
        .unwrap();
    let b = g.constant_from(&[3], vec![1.0f32, 2.0, 3.0]).unwrap();
    let y = g.add(x, b).unwrap();
    let z = g.mul(y, y).unwrap();
    let s = Session::new(&g, opts()).unwrap();
    let xv = Tensor::new(&[2, 3], vec![0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let out = s.run(&[(x, xv)], &[z], &[]).unwrap();
    assert_eq!(out[0].shape(), &[2, 3]);
    assert_eq!(
        out[0].to_vec::<f32>().unwrap(),
        vec![1.0, 9.0, 25.0, 16.0, 36.0, 64.0]
    );
}

#[test]
fn feed_errors_name_the_placeholder() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
    let y = g.neg(x).unwrap();
    let s = Session::new(&g, opts()).unwrap();
    let e = s
        .run(
            &[(x, Tensor::new(&[3], vec![1.0f32, 2.0, 3.0]).unwrap())],
            &[y],
            &[],
        )
        .unwrap_err();
    assert!(
        matches!(&e, Error::Feed { name, .. } if name == "x:0"),
        "{e}"
    );
    assert!(e.to_string().contains("float32[2]"), "{e}");
    let e = s
        .run(&[(x, Tensor::new(&[2], vec![1i32, 2]).unwrap())], &[y], &[])
        .unwrap_err();
    assert!(e.to_string().contains("int32"), "{e}");
    let e = s.run(&[], &[y], &[]).unwrap_err();
    assert!(
        e.to_string().contains("`x`") && e.to_string().contains("must be fed"),
        "{e}"
    );
}

#[test]
fn variables_initialize_and_update() {
    let mut g = Graph::new();
    let init = g.constant_from(&[2], vec![1.0f32, 2.0]).unwrap();
    let v = g.variable("w", init).unwrap();
    let one = g.constant_from(&[2], vec![1.0f32, 1.0]).unwrap();
    let inc = g.assign_add(&v, one).unwrap();
    let init_all = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, opts()).unwrap();
    let e = s.run(&[], &[v.value], &[]).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("`w`"), "{e}");
    s.run(&[], &[], &[init_all]).unwrap();
    s.run(&[], &[inc], &[]).unwrap();
    let out = s.run(&[], &[v.value], &[]).unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![2.0, 3.0]);
}

#[test]
fn integer_division_by_zero_is_an_error() {
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::I32, Shape::known(&[2])).unwrap();
    let b = g.placeholder("b", DType::I32, Shape::known(&[2])).unwrap();
    let q = g.floor_div(a, b).unwrap();
    let s = Session::new(&g, opts()).unwrap();
    let e = s
        .run(
            &[
                (a, Tensor::new(&[2], vec![7, -7]).unwrap()),
                (b, Tensor::new(&[2], vec![2, 0]).unwrap()),
            ],
            &[q],
            &[],
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("FloorDiv") && e.to_string().contains("division by zero"),
        "{e}"
    );
    let out = s
        .run(
            &[
                (a, Tensor::new(&[2], vec![7, -7]).unwrap()),
                (b, Tensor::new(&[2], vec![2, 2]).unwrap()),
            ],
            &[q],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].to_vec::<i32>().unwrap(), vec![3, -4]);
}
