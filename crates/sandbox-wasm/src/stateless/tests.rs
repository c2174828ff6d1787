//! Tests of the statelessness proof on hand-written modules.

use super::*;

fn verdict(wat: &str, export: &str) -> Option<Result<StackWindow, NotStateless>> {
    let bytes = wat::parse_str(wat).expect("wat");
    check_exports(&bytes, &[export.to_string()]).remove(0)
}

#[test]
fn arithmetic_loads_and_direct_calls_are_stateless() {
    let wat = r#"(module
      (memory 1)
      (global $g (mut i32) (i32.const 8))
      (data (i32.const 16) "\00\00\00\00\00\00\f0\3f")
      (func $helper (param f64) (result f64)
        (f64.mul (local.get 0) (f64.load (i32.const 16))))
      (func (export "sandbox_row_f") (param f64 f64) (result f64)
        (local f64)
        (local.set 2 (call $helper (local.get 0)))
        (drop (global.get $g))
        (drop (memory.size))
        (if (result f64) (f64.lt (local.get 1) (f64.const 0))
          (then (unreachable))
          (else (f64.add (local.get 2) (f64.sqrt (local.get 1)))))))"#;
    assert_eq!(verdict(wat, "sandbox_row_f"), Some(Ok(StackWindow::default())));
    assert_eq!(verdict(wat, "sandbox_row_g"), None);
}

#[test]
fn every_kind_of_write_is_refused_with_its_instruction() {
    for (body, instruction) in [
        ("(f64.store (i32.const 0) (local.get 0)) (local.get 0)", "F64Store"),
        ("(i32.store8 (i32.const 0) (i32.const 1)) (local.get 0)", "I32Store8"),
        ("(global.set $g (i32.const 1)) (local.get 0)", "GlobalSet"),
        ("(drop (memory.grow (i32.const 1))) (local.get 0)", "MemoryGrow"),
        (
            "(memory.fill (i32.const 0) (i32.const 1) (i32.const 1)) (local.get 0)",
            "MemoryFill",
        ),
        ("(call_indirect (type $t) (local.get 0) (i32.const 0))", "CallIndirect"),
    ] {
        let wat = format!(
            r#"(module
              (type $t (func (param f64) (result f64)))
              (memory 1)
              (table 1 funcref)
              (global $g (mut i32) (i32.const 0))
              (func (export "sandbox_row_f") (param f64) (result f64) {body}))"#
        );
        let reason = verdict(&wat, "sandbox_row_f")
            .expect("export exists")
            .expect_err(instruction);
        assert!(reason.contains(instruction), "{reason}");
    }
}

#[test]
fn a_write_anywhere_below_the_export_is_found() {
    let wat = r#"(module
      (memory 1)
      (func $deep (param f64) (result f64)
        (f64.store (i32.const 0) (local.get 0)) (local.get 0))
      (func $middle (param f64) (result f64) (call $deep (local.get 0)))
      (func $recursive (param f64) (result f64)
        (if (result f64) (f64.gt (local.get 0) (f64.const 1))
          (then (call $recursive (f64.div (local.get 0) (f64.const 2))))
          (else (call $middle (local.get 0)))))
      (func (export "sandbox_row_f") (param f64) (result f64) (call $recursive (local.get 0)))
      (func (export "sandbox_row_pure") (param f64) (result f64) (f64.neg (local.get 0))))"#;
    let bytes = wat::parse_str(wat).expect("wat");
    let verdicts = check_exports(&bytes, &["sandbox_row_f".into(), "sandbox_row_pure".into()]);
    assert!(verdicts[0].as_ref().expect("exists").is_err());
    assert_eq!(verdicts[1], Some(Ok(StackWindow::default())));
}

/// A module with the toolchain's stack pointer (starting at 4096) and
/// a row export whose body is `body`, framed by a prologue reserving
/// `frame` bytes in local 1 and the matching epilogue; `extra` adds
/// functions.
fn framed(frame: i32, body: &str, extra: &str) -> String {
    format!(
        r#"(module
          (memory 1)
          (global $sp (mut i32) (i32.const 4096))
          {extra}
          (func (export "sandbox_row_f") (param f64) (result f64) (local i32 f64)
            (global.set $sp (local.tee 1 (i32.sub (global.get $sp) (i32.const {frame}))))
            {body}
            (global.set $sp (i32.add (local.get 1) (i32.const {frame})))
            (local.get 2)))"#
    )
}

#[test]
fn a_frame_function_of_the_toolchains_shape_is_stateless_within_its_window() {
    // libm's force_eval: a volatile store and load in the frame.
    let body = "(f64.store offset=8 (local.get 1) (local.get 0))
                (local.set 2 (f64.load offset=8 (local.get 1)))
                (block (br_if 0 (f64.lt (local.get 0) (f64.const 0))) (local.set 2 (f64.neg (local.get 2))))";
    assert_eq!(
        verdict(&framed(16, body, ""), "sandbox_row_f"),
        Some(Ok(StackWindow {
            start: 4096 - 16,
            len: 16
        }))
    );
}

#[test]
fn a_leaf_may_use_the_bytes_below_the_pointer_without_moving_it() {
    let wat = r#"(module (memory 1) (global $sp (mut i32) (i32.const 4096))
      (func $leaf (param f64) (result f64) (local i32)
        (local.set 1 (i32.sub (global.get $sp) (i32.const 16)))
        (if (f64.lt (local.get 0) (f64.const 0)) (then (return (local.get 0))))
        (f32.store offset=12 (local.get 1) (f32.demote_f64 (local.get 0)))
        (f64.promote_f32 (f32.load offset=12 (local.get 1))))
      (func (export "sandbox_row_f") (param f64) (result f64) (call $leaf (local.get 0))))"#;
    assert_eq!(
        verdict(wat, "sandbox_row_f"),
        Some(Ok(StackWindow {
            start: 4096 - 16,
            len: 16
        }))
    );
    let outside = wat.replace("f32.store offset=12", "f32.store offset=14");
    let reason = verdict(&outside, "sandbox_row_f")
        .expect("exists")
        .expect_err("past the frame");
    assert!(reason.contains("outside its own stack frame"), "{reason}");
}

#[test]
fn a_window_over_the_cap_is_refused() {
    let extra = r#"(func $big (param f64) (result f64) (local i32)
        (global.set $sp (local.tee 1 (i32.sub (global.get $sp) (i32.const 65536))))
        (global.set $sp (i32.add (local.get 1) (i32.const 65536)))
        (local.get 0))"#;
    let wat = framed(16, "(local.set 2 (call $big (local.get 0)))", extra).replace("4096", "1048576");
    let reason = verdict(&wat, "sandbox_row_f")
        .expect("exists")
        .expect_err("over the cap");
    assert!(reason.contains("a row may use"), "{reason}");
}

#[test]
fn nested_frames_add_up() {
    let extra = r#"(func $inner (param f64) (result f64) (local i32)
        (global.set $sp (local.tee 1 (i32.sub (global.get $sp) (i32.const 32))))
        (f64.store (local.get 1) (local.get 0))
        (global.set $sp (i32.add (local.get 1) (i32.const 32)))
        (local.get 0))
      (func $frameless_loop (param f64) (result f64)
        (if (result f64) (f64.gt (local.get 0) (f64.const 1))
          (then (call $frameless_loop (f64.mul (local.get 0) (f64.const 0.5))))
          (else (call $inner (local.get 0)))))"#;
    let body = "(local.set 2 (call $frameless_loop (local.get 0)))";
    assert_eq!(
        verdict(&framed(16, body, extra), "sandbox_row_f"),
        Some(Ok(StackWindow {
            start: 4096 - 48,
            len: 48
        })),
        "recursion among frameless functions is bounded; frames add"
    );
}

#[test]
fn frames_that_could_leak_are_refused() {
    for (case, body, extra, expected) in [
        (
            "a store past the frame",
            "(f64.store offset=16 (local.get 1) (local.get 0))",
            "",
            "outside its own stack frame",
        ),
        (
            "a store through another address",
            "(f64.store (i32.const 8) (local.get 0))",
            "",
            "outside its own stack frame",
        ),
        (
            "a store through a copy of the frame pointer",
            "(f64.store (i32.add (local.get 1) (i32.const 0)) (local.get 0))",
            "",
            "outside its own stack frame",
        ),
        (
            "an early return",
            "(if (f64.lt (local.get 0) (f64.const 0)) (then (return (local.get 0))))",
            "",
            "returns before",
        ),
        (
            "a branch past the epilogue",
            "(br_if 0 (f64.lt (local.get 0) (f64.const 0)))",
            "",
            "branches past",
        ),
        (
            "a frame pointer overwritten before a store",
            "(local.set 1 (i32.const 0)) (f64.store (local.get 1) (local.get 0)) (local.set 1 (i32.sub (global.get $sp) (i32.const 16)))",
            "",
            "outside its own stack frame",
        ),
        (
            "a frame pointer overwritten on one path before the epilogue",
            "(if (f64.lt (local.get 0) (f64.const 0)) (then (local.set 1 (i32.const 0))))",
            "",
            "does not restore",
        ),
        (
            "a frame pointer overwritten in a loop",
            "(loop (f64.store (local.get 1) (local.get 0)) (local.set 1 (i32.const 64)) (br_if 0 (f64.lt (local.get 0) (f64.const 0))))",
            "",
            "outside its own stack frame",
        ),
        (
            "a second stack-pointer write",
            "(global.set $sp (i32.const 0))",
            "",
            "GlobalSet",
        ),
        (
            "recursion through a frame",
            "(local.set 2 (call $again (local.get 0)))",
            "(func $again (param f64) (result f64) (call $again2 (local.get 0)))
             (func $again2 (param f64) (result f64) (call 2 (local.get 0)))",
            "recursive",
        ),
    ] {
        let reason = verdict(&framed(16, body, extra), "sandbox_row_f")
            .expect("export exists")
            .expect_err(case);
        assert!(reason.contains(expected), "{case}: {reason}");
    }
    // A frame that is never given back.
    let wat = r#"(module (memory 1) (global $sp (mut i32) (i32.const 4096))
      (func (export "sandbox_row_f") (param f64) (result f64) (local i32)
        (global.set $sp (local.tee 1 (i32.sub (global.get $sp) (i32.const 16))))
        (local.get 0)))"#;
    let reason = verdict(wat, "sandbox_row_f").expect("exists").expect_err("no epilogue");
    assert!(reason.contains("does not restore"), "{reason}");
    // A start function could move the stack pointer before any row.
    let with_start = framed(16, "", "(func $init) (start $init)");
    let reason = verdict(&with_start, "sandbox_row_f")
        .expect("exists")
        .expect_err("start");
    assert!(reason.contains("start function"), "{reason}");
}

/// A long call chain (a hostile module can hold hundreds of thousands
/// of tiny functions) must not exhaust the host's stack: a stack
/// overflow aborts the whole process, not just the admission.
#[test]
fn a_long_call_chain_does_not_overflow_the_hosts_stack() {
    const CHAIN: usize = 50_000;
    let mut wat = String::from(
        r#"(module (memory 1) (global $sp (mut i32) (i32.const 4096))
          (func (export "sandbox_row_f") (param f64) (result f64) (call $c0 (local.get 0)))"#,
    );
    for i in 0..CHAIN - 1 {
        wat += &format!(
            "(func $c{i} (param f64) (result f64) (call $c{} (local.get 0)))\n",
            i + 1
        );
    }
    wat += &format!(
        r#"(func $c{} (param f64) (result f64) (local i32)
             (global.set $sp (local.tee 1 (i32.sub (global.get $sp) (i32.const 16))))
             (global.set $sp (i32.add (local.get 1) (i32.const 16)))
             (local.get 0)))"#,
        CHAIN - 1
    );
    let bytes = wat::parse_str(&wat).expect("wat");
    // The default stack of a spawned thread (tokio's blocking pool and
    // the test harness use the same 2 MiB).
    let verdict = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || check_exports(&bytes, &["sandbox_row_f".to_string()]).remove(0))
        .expect("thread")
        .join()
        .expect("no panic");
    assert_eq!(
        verdict,
        Some(Ok(StackWindow {
            start: 4096 - 16,
            len: 16
        }))
    );
}

/// Recursion through a frame function, with the frameless part of the
/// cycle explored first (from another caller), is still recursion.
#[test]
fn recursion_through_a_frame_is_found_whatever_the_order_of_exploration() {
    let wat = r#"(module (memory 1) (global $sp (mut i32) (i32.const 4096))
      (func $g (param f64) (result f64)
        (if (result f64) (f64.lt (local.get 0) (f64.const 0))
          (then (call $w (local.get 0)))
          (else (call $f (local.get 0)))))
      (func $w (param f64) (result f64) (call $g (f64.neg (local.get 0))))
      (func $f (param f64) (result f64) (local i32 f64)
        (global.set $sp (local.tee 1 (i32.sub (global.get $sp) (i32.const 16))))
        (local.set 2 (call $w (local.get 0)))
        (global.set $sp (i32.add (local.get 1) (i32.const 16)))
        (local.get 2))
      (func (export "sandbox_row_f") (param f64) (result f64) (call $g (local.get 0))))"#;
    let reason = verdict(wat, "sandbox_row_f").expect("exists").expect_err("recursive");
    assert!(reason.contains("recursive"), "{reason}");
    // A frame function calling itself directly.
    let body = "(if (f64.gt (local.get 0) (f64.const 1))
                  (then (local.set 2 (call 0 (f64.sub (local.get 0) (f64.const 1))))))";
    let reason = verdict(&framed(16, body, ""), "sandbox_row_f")
        .expect("exists")
        .expect_err("self-recursive");
    assert!(reason.contains("recursive"), "{reason}");
    // A frameless function calling itself is harmless.
    let wat = framed(
        16,
        "(local.set 2 (call $halve (local.get 0)))",
        "(func $halve (param f64) (result f64)
           (if (result f64) (f64.gt (local.get 0) (f64.const 1))
             (then (call $halve (f64.mul (local.get 0) (f64.const 0.5)))) (else (local.get 0))))",
    );
    assert_eq!(
        verdict(&wat, "sandbox_row_f"),
        Some(Ok(StackWindow {
            start: 4096 - 16,
            len: 16
        }))
    );
    // And a frame below a frameless cycle counts on every path into it.
    let wat = r#"(module (memory 1) (global $sp (mut i32) (i32.const 4096))
      (func $f (param f64) (result f64) (local i32)
        (global.set $sp (local.tee 1 (i32.sub (global.get $sp) (i32.const 16))))
        (global.set $sp (i32.add (local.get 1) (i32.const 16)))
        (local.get 0))
      (func $x (param f64 f64) (result f64)
        (if (result f64) (f64.gt (local.get 1) (f64.const 0))
          (then (call $y (local.get 0)))
          (else (call $f (local.get 0)))))
      (func $y (param f64) (result f64) (call $x (local.get 0) (f64.const 0)))
      (func $z (param f64) (result f64) (local i32 f64)
        (global.set $sp (local.tee 1 (i32.sub (global.get $sp) (i32.const 32))))
        (local.set 2 (call $y (local.get 0)))
        (global.set $sp (i32.add (local.get 1) (i32.const 32)))
        (local.get 2))
      (func (export "sandbox_row_f") (param f64) (result f64)
        (drop (call $x (local.get 0) (f64.const 1)))
        (call $z (local.get 0))))"#;
    assert_eq!(
        verdict(wat, "sandbox_row_f"),
        Some(Ok(StackWindow {
            start: 4096 - 48,
            len: 48
        }))
    );
}

/// Attacks on the frame rules that hold (red-team regression cases).
#[test]
fn more_ways_out_of_a_frame_are_refused() {
    for (case, body, extra) in [
        (
            "a memarg offset that wraps past 4 GiB",
            "(f64.store offset=4294967295 (local.get 1) (local.get 0))",
            "",
        ),
        (
            "a br_table to the function's label",
            "(block (br_table 0 1 (i32.trunc_sat_f64_s (local.get 0))))",
            "",
        ),
        (
            "a frame copy rewritten on a loop's back edge",
            "(local.set 3 (local.get 1))
             (loop (f64.store (local.get 3) (local.get 0))
               (local.set 3 (i32.sub (local.get 3) (i32.const 16)))
               (br_if 0 (f64.lt (local.get 0) (f64.const 0))))",
            "",
        ),
        (
            "a frame copy overwritten on one path of an if without else",
            "(local.set 3 (local.get 1))
             (if (f64.lt (local.get 0) (f64.const 0)) (then (local.set 3 (i32.const 0))))
             (f64.store (local.get 3) (local.get 0))",
            "",
        ),
        (
            "a frame pointer through select",
            "(f64.store (select (local.get 1) (i32.const 0) (i32.const 1)) (local.get 0))",
            "",
        ),
        (
            "a frame pointer through a block result",
            "(f64.store (block (result i32) (local.get 1)) (local.get 0))",
            "",
        ),
        (
            "a frame pointer passed to a callee",
            "(local.set 2 (call $store (local.get 1) (local.get 0)))",
            "(func $store (param i32 f64) (result f64) (f64.store (local.get 0) (local.get 1)) (local.get 1))",
        ),
        (
            "a second prologue later in the body",
            "(global.set $sp (local.tee 3 (i32.sub (global.get $sp) (i32.const 16))))",
            "",
        ),
    ] {
        let wat = framed(16, body, extra).replace("(local i32 f64)", "(local i32 f64 i32)");
        let verdict = verdict(&wat, "sandbox_row_f").expect("export exists");
        assert!(verdict.is_err(), "{case}: {verdict:?}");
    }
    // An epilogue through a copy of the frame pointer is not the
    // toolchain's shape.
    let wat = framed(16, "(local.set 3 (local.get 1))", "")
        .replace("(local i32 f64)", "(local i32 f64 i32)")
        .replace(
            "(i32.add (local.get 1) (i32.const 16))",
            "(i32.add (local.get 3) (i32.const 16))",
        );
    assert!(verdict(&wat, "sandbox_row_f").expect("exists").is_err());
    // A frame of a negative size, or over 64 KiB, is not a frame.
    for frame in [-16, 64 * 1024 + 8] {
        let wat = framed(frame, "(f64.store (local.get 1) (local.get 0))", "");
        assert!(verdict(&wat, "sandbox_row_f").expect("exists").is_err(), "{frame}");
    }
    // A stack pointer that starts too low for the frames.
    let wat = framed(16, "", "").replace("(i32.const 4096)", "(i32.const 8)");
    assert!(verdict(&wat, "sandbox_row_f").expect("exists").is_err());
}

#[test]
fn a_leaf_frame_calling_a_moving_frame_shares_its_bytes() {
    let wat = r#"(module (memory 1) (global $sp (mut i32) (i32.const 4096))
      (func $moving (param f64) (result f64) (local i32)
        (global.set $sp (local.tee 1 (i32.sub (global.get $sp) (i32.const 8))))
        (f64.store (local.get 1) (local.get 0))
        (global.set $sp (i32.add (local.get 1) (i32.const 8)))
        (local.get 0))
      (func (export "sandbox_row_f") (param f64) (result f64) (local i32)
        (local.set 1 (i32.sub (global.get $sp) (i32.const 24)))
        (f64.store offset=16 (local.get 1) (call $moving (local.get 0)))
        (f64.load offset=16 (local.get 1))))"#;
    assert_eq!(
        verdict(wat, "sandbox_row_f"),
        Some(Ok(StackWindow {
            start: 4096 - 24,
            len: 24
        }))
    );
}

#[test]
fn imported_functions_are_not_stateless() {
    let wat = r#"(module
      (import "sandbox" "tick" (func $tick (param f64) (result f64)))
      (memory 1)
      (func (export "sandbox_row_f") (param f64) (result f64) (call $tick (local.get 0))))"#;
    let reason = verdict(wat, "sandbox_row_f").expect("exists").expect_err("import");
    assert!(reason.contains("imported"), "{reason}");
}
