//! Proof, from a module's code, that a per-row export keeps no state.
//!
//! A UDF's value for a row must not depend on other rows (other privacy
//! units' rows above all). The batch export (`sandbox_udf_<name>`) sees a
//! whole batch, so each row is given its own fresh instance. The per-row
//! export (`sandbox_row_<name>(f64, …) -> f64`, [`sandbox_abi::ROW_PREFIX`])
//! sees one row's values as parameters. If nothing it does can outlive a
//! call, one instance can serve every row of a batch: each call starts from
//! the state instantiation left (which no data has touched), so its result
//! is a function of its parameters alone.
//!
//! What is proven, over every function reachable from the export through
//! `call` (an allow-list; anything else — SIMD, bulk memory, reference and
//! table instructions, `call_indirect`, imports — means "not provably
//! stateless", and the host falls back to one instance per row):
//!
//! * **Frameless functions** use only control flow, locals, `global.get`,
//!   loads, `memory.size`, constants and the numeric instructions of the
//!   MVP, sign-extension and saturating-conversion proposals. They write
//!   nothing outside their own call.
//! * **Frame functions** are how compiled Rust (and C) keep values in memory
//!   for a moment (libm's `force_eval!` is a volatile store and load, for
//!   instance): a shadow stack in linear memory, whose pointer is a mutable
//!   `i32` global. Such a function is accepted when it has exactly the
//!   toolchain's shape: it starts with `global.get $sp; i32.const N;
//!   i32.sub; local.tee $frame; global.set $sp`, ends with `local.get
//!   $frame; i32.const N; i32.add; global.set $sp` followed only by pushing
//!   its results, has no `return` and no branch to its own label (so every
//!   normal exit restores the pointer), never writes `$frame` again, and
//!   every store's address is `$frame` itself with `offset + width <= N`.
//!   So its writes stay inside its own frame, and the pointer is back where
//!   it was when it returns. A leaf may instead use the bytes just below the
//!   pointer without moving it (`global.get $sp; i32.const N; i32.sub;
//!   local.set $frame`, as libm's `log1p` does); then only the store rule
//!   applies.
//! * One stack-pointer global for the module, defined by the module with a
//!   constant initial value `SP0`, no start function (so nothing runs
//!   before the rows), and no recursion through a frame function, so the
//!   deepest stack use `W` is the largest sum of frame sizes along a call
//!   path. Every write of a call then lands in `[SP0 - W, SP0)`.
//!
//! The host (`call.rs`) snapshots that window after instantiation and
//! restores it after every successful call, so even bytes a frame left
//! behind are gone before the next row; a call that traps may leave the
//! stack pointer lowered, so the host discards that instance and starts a
//! fresh one for the next row. Floating-point NaN bits are canonicalised
//! by the engine when `RuntimeConfig::canonicalize_nans` is set, and when
//! they are not they still depend only on the row's own values.

use std::collections::{BTreeSet, HashMap, HashSet};
use wasmtime::wasmparser::{
    BlockType, ExternalKind, FunctionBody, MemArg, Operator, Parser, Payload, TypeRef, ValType,
};

/// Largest shadow-stack frame a frame function may reserve, in bytes.
const MAX_FRAME_BYTES: u32 = 64 * 1024;

/// Largest stack window a stateless export may use, in bytes: the host
/// copies it back after every row, work no fuel limit counts, so it is
/// capped (compiled math needs tens of bytes).
const MAX_WINDOW_BYTES: u32 = 64 * 1024;

/// Why an export is not provably stateless (for the operator log and the
/// job's developer). Depends on the module only, never on data.
pub type NotStateless = String;

/// How the host evaluates a UDF, decided at admission from the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowExport {
    /// `sandbox_row_<name>` exists, has the shape `(f64, …) -> f64` and is
    /// provably stateless: one instance serves a whole batch, one call per
    /// row.
    Stateless,
    /// `sandbox_row_<name>` exists but could write state (the reason names
    /// the function and instruction): every row gets its own instance.
    NotStateless(NotStateless),
    /// No per-row export (a guest built without the SDK's `export!`, or an
    /// older SDK): every row gets its own instance.
    Absent,
}

/// What the host must restore after each call of a stateless export: the
/// bytes `[start, start + len)` of linear memory (the shadow-stack window;
/// `len` is 0 when no reachable function has a frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct StackWindow {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

/// A defined global: mutable, its type, and its constant `i32` initial
/// value if it has one.
struct GlobalInfo {
    mutable: bool,
    is_i32: bool,
    init_i32: Option<i32>,
}

/// The module as the check needs it.
struct Code<'a> {
    imported_functions: u32,
    imported_globals: u32,
    /// Parameter and result counts per type index (function types only).
    types: Vec<Option<(usize, usize)>>,
    /// Type index of each defined function.
    function_types: Vec<u32>,
    globals: Vec<GlobalInfo>,
    bodies: Vec<FunctionBody<'a>>,
    exports: HashMap<&'a str, u32>,
    has_start: bool,
}

fn parse(bytes: &[u8]) -> Result<Code<'_>, NotStateless> {
    let err = |what: &str, e: wasmtime::wasmparser::BinaryReaderError| format!("cannot parse {what}: {e}");
    let mut code = Code {
        imported_functions: 0,
        imported_globals: 0,
        types: Vec::new(),
        function_types: Vec::new(),
        globals: Vec::new(),
        bodies: Vec::new(),
        exports: HashMap::new(),
        has_start: false,
    };
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| err("the module", e))? {
            Payload::TypeSection(reader) => {
                for ty in reader.into_iter_err_on_gc_types() {
                    match ty {
                        Ok(f) => code.types.push(Some((f.params().len(), f.results().len()))),
                        Err(_) => code.types.push(None),
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| err("an import", e))?;
                    match import.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => code.imported_functions += 1,
                        TypeRef::Global(_) => code.imported_globals += 1,
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    code.function_types.push(ty.map_err(|e| err("a function", e))?);
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader {
                    let global = global.map_err(|e| err("a global", e))?;
                    let mut ops = global.init_expr.get_operators_reader();
                    let init_i32 = match (ops.read(), ops.read()) {
                        (Ok(Operator::I32Const { value }), Ok(Operator::End)) if ops.eof() => Some(value),
                        _ => None,
                    };
                    code.globals.push(GlobalInfo {
                        mutable: global.ty.mutable,
                        is_i32: global.ty.content_type == ValType::I32,
                        init_i32,
                    });
                }
            }
            Payload::StartSection { .. } => code.has_start = true,
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| err("an export", e))?;
                    if matches!(export.kind, ExternalKind::Func | ExternalKind::FuncExact) {
                        code.exports.insert(export.name, export.index);
                    }
                }
            }
            Payload::CodeSectionEntry(body) => code.bodies.push(body),
            _ => {}
        }
    }
    Ok(code)
}

/// For each name in `exports`: `Some(Ok(window))` if the export exists and
/// is provably stateless (restore `window` after each call),
/// `Some(Err(reason))` if it exists but cannot be proven stateless, `None`
/// if there is no such function export. `bytes` must already have passed
/// validation.
pub(crate) fn check_exports(bytes: &[u8], exports: &[String]) -> Vec<Option<Result<StackWindow, NotStateless>>> {
    let code = match parse(bytes) {
        Ok(code) => code,
        Err(reason) => return exports.iter().map(|_| Some(Err(reason.clone()))).collect(),
    };
    let mut facts: HashMap<u32, Result<Facts, NotStateless>> = HashMap::new();
    exports
        .iter()
        .map(|name| {
            let root = *code.exports.get(name.as_str())?;
            Some(check_reachable(&code, root, &mut facts))
        })
        .collect()
}

/// What one function does, as far as state goes.
#[derive(Debug, Clone)]
struct Facts {
    callees: Vec<u32>,
    frame: Option<Frame>,
}

/// A function's shadow-stack frame: `bytes` below the stack pointer
/// (`global`), addressed through `local`.
#[derive(Debug, Clone, Copy)]
struct Frame {
    global: u32,
    bytes: u32,
    local: u32,
    /// Whether it moves the stack pointer down for its callees (and back),
    /// or only uses the bytes below it as a leaf would.
    moves: bool,
}

fn check_reachable(
    code: &Code<'_>,
    root: u32,
    facts: &mut HashMap<u32, Result<Facts, NotStateless>>,
) -> Result<StackWindow, NotStateless> {
    // Every reachable function, checked on its own.
    let mut stack = vec![root];
    let mut reachable = HashSet::new();
    while let Some(index) = stack.pop() {
        if !reachable.insert(index) {
            continue;
        }
        let f = facts
            .entry(index)
            .or_insert_with(|| check_function(code, index))
            .clone()?;
        stack.extend(f.callees);
    }
    let fact = |i: u32| -> Result<Facts, NotStateless> {
        facts
            .get(&i)
            .cloned()
            .unwrap_or_else(|| Err(format!("function {i} was not checked")))
    };
    let mut pointer = None;
    for &i in &reachable {
        if let Some(Frame { global, .. }) = fact(i)?.frame {
            if pointer.is_some_and(|p| p != global) {
                return Err("its functions use two different stack-pointer globals".into());
            }
            pointer = Some(global);
        }
    }
    let Some(pointer) = pointer else {
        return Ok(StackWindow::default());
    };
    if code.has_start {
        return Err("the module has a start function, which could move the stack pointer before the rows".into());
    }
    let initial = pointer
        .checked_sub(code.imported_globals)
        .and_then(|g| code.globals.get(g as usize))
        .and_then(|g| (g.mutable && g.is_i32).then_some(g.init_i32).flatten())
        .ok_or_else(|| format!("stack-pointer global {pointer} is not a defined mutable i32 with a constant start"))?;
    let depth = deepest_stack(root, &fact)?;
    if depth > MAX_WINDOW_BYTES {
        return Err(format!(
            "its stack use of {depth} bytes is over the {MAX_WINDOW_BYTES} bytes a row may use"
        ));
    }
    let start = u32::try_from(initial)
        .ok()
        .and_then(|sp| sp.checked_sub(depth))
        .ok_or_else(|| format!("its stack use of {depth} bytes does not fit below the stack pointer"))?;
    Ok(StackWindow { start, len: depth })
}

/// The largest sum of frame sizes along a call path from `root`; a cycle
/// through a frame function has no bound and is refused.
///
/// Over the strongly connected components of the call graph (Tarjan's
/// algorithm, iterative: a hostile module may chain any number of
/// functions, and the host's stack must not follow it). A component with a
/// cycle may hold frameless functions only (they never move the stack
/// pointer); its depth is the deepest of the calls leaving it, the same for
/// every member since each reaches all the others. Tarjan finishes a
/// component only after every component it calls, so each depth is final
/// when it is recorded.
fn deepest_stack(root: u32, fact: &dyn Fn(u32) -> Result<Facts, NotStateless>) -> Result<u32, NotStateless> {
    struct Node {
        facts: Facts,
        index: usize,
        low: usize,
        on_stack: bool,
        depth: Option<u32>,
    }
    let mut nodes: HashMap<u32, Node> = HashMap::new();
    let mut open: Vec<u32> = Vec::new();
    // The depth-first walk: a function and how many of its callees it has
    // looked at.
    let mut walk: Vec<(u32, usize)> = Vec::new();
    let missing = |i: u32| format!("function {i} was not checked");
    let enter = |i: u32, nodes: &mut HashMap<u32, Node>, open: &mut Vec<u32>| -> Result<(), NotStateless> {
        let index = nodes.len();
        nodes.insert(
            i,
            Node {
                facts: fact(i)?,
                index,
                low: index,
                on_stack: true,
                depth: None,
            },
        );
        open.push(i);
        Ok(())
    };
    enter(root, &mut nodes, &mut open)?;
    walk.push((root, 0));
    while let Some(&(f, next)) = walk.last() {
        let callee = nodes
            .get(&f)
            .ok_or_else(|| missing(f))?
            .facts
            .callees
            .get(next)
            .copied();
        if let Some(callee) = callee {
            if let Some(last) = walk.last_mut() {
                last.1 += 1;
            }
            match nodes.get(&callee) {
                None => {
                    enter(callee, &mut nodes, &mut open)?;
                    walk.push((callee, 0));
                }
                Some(c) if c.on_stack => {
                    let index = c.index;
                    let node = nodes.get_mut(&f).ok_or_else(|| missing(f))?;
                    node.low = node.low.min(index);
                }
                Some(_) => {}
            }
            continue;
        }
        walk.pop();
        let (index, low) = nodes.get(&f).map(|n| (n.index, n.low)).ok_or_else(|| missing(f))?;
        if let Some(&(parent, _)) = walk.last() {
            let node = nodes.get_mut(&parent).ok_or_else(|| missing(parent))?;
            node.low = node.low.min(low);
        }
        if low != index {
            continue;
        }
        // `f` roots a component: its members are on `open` down to `f`.
        let at = open.iter().rposition(|&i| i == f).ok_or_else(|| missing(f))?;
        let members = open.split_off(at);
        let inside: HashSet<u32> = members.iter().copied().collect();
        let mut cyclic = members.len() > 1;
        let mut deepest = 0u32;
        for m in &members {
            let node = nodes.get(m).ok_or_else(|| missing(*m))?;
            for callee in &node.facts.callees {
                if inside.contains(callee) {
                    cyclic = true;
                } else {
                    let depth = nodes
                        .get(callee)
                        .and_then(|c| c.depth)
                        .ok_or_else(|| missing(*callee))?;
                    deepest = deepest.max(depth);
                }
            }
        }
        for m in &members {
            let node = nodes.get(m).ok_or_else(|| missing(*m))?;
            if cyclic && node.facts.frame.is_some() {
                return Err(format!("function {m} has a stack frame and is recursive"));
            }
        }
        for m in &members {
            let node = nodes.get_mut(m).ok_or_else(|| missing(*m))?;
            // A moving frame puts its callees below it; a non-moving one
            // shares the bytes below the pointer with them. (In a cycle
            // every member is frameless.)
            let depth = match node.facts.frame {
                Some(Frame { bytes, moves: true, .. }) => bytes
                    .checked_add(deepest)
                    .ok_or_else(|| "its stack use overflows".to_string())?,
                Some(Frame {
                    bytes, moves: false, ..
                }) => bytes.max(deepest),
                None => deepest,
            };
            node.on_stack = false;
            node.depth = Some(depth);
        }
    }
    nodes.get(&root).and_then(|n| n.depth).ok_or_else(|| missing(root))
}

/// Abstract value on the operand stack: the frame pointer itself, or
/// anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    Frame,
    Other,
}

/// Checks one function: every instruction allowed, stores inside its own
/// frame, the stack pointer restored on every normal exit.
fn check_function(code: &Code<'_>, index: u32) -> Result<Facts, NotStateless> {
    let Some(defined) = index.checked_sub(code.imported_functions) else {
        return Err(format!("it calls imported function {index}"));
    };
    let body = code
        .bodies
        .get(defined as usize)
        .ok_or_else(|| format!("function {index} has no body"))?;
    let mut reader = body
        .get_operators_reader()
        .map_err(|e| format!("cannot read function {index}: {e}"))?;
    let mut ops = Vec::new();
    while !reader.eof() {
        ops.push(
            reader
                .read()
                .map_err(|e| format!("cannot read function {index}: {e}"))?,
        );
    }
    let refuse = |what: &str| Err(format!("function {index} {what}"));

    // The toolchain's prologue, if this is a frame function: either it
    // moves the stack pointer (`…; local.tee $frame; global.set $sp`, and
    // must move it back), or it is a leaf that only uses the bytes just
    // below it (`…; local.set $frame`) and never moves it.
    let frame = match ops.get(..5) {
        Some(
            [
                Operator::GlobalGet { global_index: g },
                Operator::I32Const { value: n },
                Operator::I32Sub,
                Operator::LocalTee { local_index: l },
                Operator::GlobalSet { global_index: g2 },
            ],
        ) if g == g2 && *n > 0 && (*n as u32) <= MAX_FRAME_BYTES => Some(Frame {
            global: *g,
            bytes: *n as u32,
            local: *l,
            moves: true,
        }),
        _ => match ops.get(..4) {
            Some(
                [
                    Operator::GlobalGet { global_index: g },
                    Operator::I32Const { value: n },
                    Operator::I32Sub,
                    Operator::LocalSet { local_index: l },
                ],
            ) if *n > 0 && (*n as u32) <= MAX_FRAME_BYTES => Some(Frame {
                global: *g,
                bytes: *n as u32,
                local: *l,
                moves: false,
            }),
            _ => None,
        },
    };
    let moving = frame.filter(|f| f.moves);
    let prologue_len = frame.map_or(0, |f| if f.moves { 5 } else { 4 });
    let epilogue_at = match moving {
        None => None,
        Some(Frame {
            global: g,
            bytes: n,
            local: l,
            ..
        }) => {
            // `local.get l; i32.const n; i32.add; global.set g`, then only
            // the results pushed, then the function's `end`.
            let is_push = |op: &Operator<'_>| {
                matches!(
                    op,
                    Operator::LocalGet { .. }
                        | Operator::I32Const { .. }
                        | Operator::I64Const { .. }
                        | Operator::F32Const { .. }
                        | Operator::F64Const { .. }
                )
            };
            let end = ops.len().saturating_sub(1);
            let pushes = ops[..end].iter().rev().take_while(|op| is_push(op)).count().min(2);
            let at = end.checked_sub(pushes + 4);
            match at.and_then(|at| ops.get(at..at + 4).map(|w| (at, w))) {
                Some((
                    at,
                    [
                        Operator::LocalGet { local_index: l2 },
                        Operator::I32Const { value: n2 },
                        Operator::I32Add,
                        Operator::GlobalSet { global_index: g2 },
                    ],
                )) if *l2 == l && *n2 as u32 == n && *g2 == g && at >= 5 => Some(at + 3),
                _ => return refuse("has a stack frame but does not restore the stack pointer at its end"),
            }
        }
    };

    let mut callees = Vec::new();
    let mut stack: Vec<Value> = Vec::new();
    // Which locals hold the frame pointer here (flow-sensitive: compilers
    // reuse locals for other values on other paths).
    let mut holding: FrameLocals = BTreeSet::new();
    let mut blocks: Vec<Block> = vec![Block {
        height: 0,
        result: false,
        kind: BlockKind::Block,
        entry: BTreeSet::new(),
        exit: None,
    }];
    // Code after an unconditional branch, until its block ends.
    let mut dead = false;
    let block_result = |ty: &BlockType| -> Result<bool, NotStateless> {
        match ty {
            BlockType::Empty => Ok(false),
            BlockType::Type(_) => Ok(true),
            BlockType::FuncType(_) => Err(format!("function {index} uses a block with parameters")),
        }
    };
    let past_epilogue = |depth: u32, blocks: &[Block]| moving.is_some() && depth as usize + 1 == blocks.len();
    for (at, op) in ops.iter().enumerate() {
        let in_prologue = at < prologue_len;
        let floor = blocks.last().map_or(0, |b| b.height);
        match op {
            Operator::Block { blockty } | Operator::Loop { blockty } => {
                let result = block_result(blockty)?;
                let kind = if matches!(op, Operator::Loop { .. }) {
                    // A branch back to the loop's head may come from any
                    // point of its body: a local written there may hold
                    // anything at the head.
                    for local in locals_written_in_block(&ops, at) {
                        holding.remove(&local);
                    }
                    BlockKind::Loop
                } else {
                    BlockKind::Block
                };
                blocks.push(Block {
                    height: stack.len(),
                    result,
                    kind,
                    entry: holding.clone(),
                    exit: None,
                });
            }
            Operator::If { blockty } => {
                pop(&mut stack, 1, dead, floor, index)?;
                let result = block_result(blockty)?;
                blocks.push(Block {
                    height: stack.len(),
                    result,
                    kind: BlockKind::If { has_else: false },
                    entry: holding.clone(),
                    exit: None,
                });
            }
            Operator::Else => {
                let block = blocks
                    .last_mut()
                    .ok_or_else(|| format!("function {index}: stray else"))?;
                if !dead {
                    join(&mut block.exit, &holding);
                }
                block.kind = BlockKind::If { has_else: true };
                holding = block.entry.clone();
                stack.truncate(block.height);
                dead = false;
            }
            Operator::End => {
                let mut block = blocks.pop().ok_or_else(|| format!("function {index}: stray end"))?;
                if block.kind == (BlockKind::If { has_else: false }) {
                    // The missing else falls through with the entry state.
                    let entry = block.entry.clone();
                    join(&mut block.exit, &entry);
                }
                let mut after = if block.kind == BlockKind::Loop {
                    None
                } else {
                    block.exit
                };
                if !dead {
                    join(&mut after, &holding);
                }
                stack.truncate(block.height);
                match after {
                    Some(state) => {
                        holding = state;
                        dead = false;
                        if block.result {
                            stack.push(Value::Other);
                        }
                    }
                    None => dead = true,
                }
            }
            Operator::Br { relative_depth } | Operator::BrIf { relative_depth } => {
                if past_epilogue(*relative_depth, &blocks) {
                    return refuse("has a stack frame and branches past its epilogue");
                }
                if matches!(op, Operator::BrIf { .. }) {
                    pop(&mut stack, 1, dead, floor, index)?;
                }
                if !dead {
                    branch_to(&mut blocks, *relative_depth, &holding);
                }
                if matches!(op, Operator::Br { .. }) {
                    dead = true;
                }
            }
            Operator::BrTable { targets } => {
                pop(&mut stack, 1, dead, floor, index)?;
                let mut depths = vec![targets.default()];
                for target in targets.targets() {
                    depths.push(target.map_err(|e| format!("cannot read function {index}: {e}"))?);
                }
                for depth in depths {
                    if past_epilogue(depth, &blocks) {
                        return refuse("has a stack frame and branches past its epilogue");
                    }
                    if !dead {
                        branch_to(&mut blocks, depth, &holding);
                    }
                }
                dead = true;
            }
            Operator::Return => {
                if moving.is_some() {
                    return refuse("has a stack frame and returns before its epilogue");
                }
                dead = true;
            }
            Operator::Unreachable => dead = true,
            Operator::Call { function_index } => {
                let ty = function_index
                    .checked_sub(code.imported_functions)
                    .and_then(|d| code.function_types.get(d as usize))
                    .and_then(|t| code.types.get(*t as usize).copied().flatten());
                let Some((params, results)) = ty else {
                    return Err(format!(
                        "function {index} calls function {function_index}, which is imported or not a plain function"
                    ));
                };
                pop(&mut stack, params, dead, floor, index)?;
                if !dead {
                    stack.extend(std::iter::repeat_n(Value::Other, results));
                }
                callees.push(*function_index);
            }
            Operator::GlobalSet { .. } if in_prologue => {
                pop(&mut stack, 1, dead, floor, index)?;
            }
            Operator::GlobalSet { .. } if epilogue_at == Some(at) => {
                // The epilogue's `local.get` must read the frame pointer on
                // every path that reaches it.
                let restores = moving.is_some_and(|f| holding.contains(&f.local));
                if dead || !restores {
                    return refuse("has a stack frame but does not restore the stack pointer on every path");
                }
                pop(&mut stack, 1, dead, floor, index)?;
            }
            Operator::LocalTee { local_index } | Operator::LocalSet { local_index } => {
                let value = if in_prologue {
                    pop(&mut stack, 1, dead, floor, index)?;
                    Value::Frame
                } else {
                    pop(&mut stack, 1, dead, floor, index)?[0]
                };
                if !dead {
                    if value == Value::Frame {
                        holding.insert(*local_index);
                    } else {
                        holding.remove(local_index);
                    }
                    if matches!(op, Operator::LocalTee { .. }) {
                        stack.push(value);
                    }
                }
            }
            Operator::LocalGet { local_index } => {
                if !dead {
                    stack.push(if holding.contains(local_index) {
                        Value::Frame
                    } else {
                        Value::Other
                    });
                }
            }
            op => {
                if let Some(width) = store_width(op) {
                    let memarg = store_memarg(op);
                    let values = pop(&mut stack, 2, dead, floor, index)?;
                    let inside = match (frame, memarg) {
                        (Some(f), Some(m)) if !dead && values[0] == Value::Frame => {
                            m.offset.checked_add(width).is_some_and(|end| end <= u64::from(f.bytes))
                        }
                        _ => false,
                    };
                    if !inside {
                        return Err(format!(
                            "function {index} uses `{}` at an address outside its own stack frame",
                            op_name(op)
                        ));
                    }
                    continue;
                }
                let Some((pops, pushes)) = stack_effect(op) else {
                    return Err(format!(
                        "function {index} uses `{}`, which can write state or call unknown code",
                        op_name(op)
                    ));
                };
                pop(&mut stack, pops, dead, floor, index)?;
                if !dead {
                    stack.extend(std::iter::repeat_n(Value::Other, pushes));
                }
            }
        }
    }
    Ok(Facts { callees, frame })
}

/// The locals that hold the frame pointer at a point of a function.
type FrameLocals = BTreeSet<u32>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Block,
    Loop,
    If { has_else: bool },
}

/// An open block while walking a function.
struct Block {
    /// Operand-stack height at entry.
    height: usize,
    /// Whether it leaves one value.
    result: bool,
    kind: BlockKind,
    /// Frame locals at entry (for an `if`'s else branch).
    entry: FrameLocals,
    /// Frame locals on every branch to its end so far (intersection).
    exit: Option<FrameLocals>,
}

/// Intersects `into` with `state` (`None` is "no path yet").
fn join(into: &mut Option<FrameLocals>, state: &FrameLocals) {
    *into = Some(match into.take() {
        None => state.clone(),
        Some(before) => before.intersection(state).copied().collect(),
    });
}

/// Records a branch `depth` blocks out with the current frame locals (a
/// loop's head needs nothing: its body's writes were forgotten at entry).
fn branch_to(blocks: &mut [Block], depth: u32, state: &FrameLocals) {
    let Some(target) = blocks.len().checked_sub(depth as usize + 1) else {
        return;
    };
    if let Some(block) = blocks.get_mut(target)
        && block.kind != BlockKind::Loop
    {
        join(&mut block.exit, state);
    }
}

/// Locals written between the block opened at `ops[at]` and its `end`.
fn locals_written_in_block(ops: &[Operator<'_>], at: usize) -> Vec<u32> {
    let mut depth = 0usize;
    let mut written = Vec::new();
    for op in ops.iter().skip(at + 1) {
        match op {
            Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => depth += 1,
            Operator::End if depth == 0 => break,
            Operator::End => depth -= 1,
            Operator::LocalSet { local_index } | Operator::LocalTee { local_index } => written.push(*local_index),
            _ => {}
        }
    }
    written
}

/// Pops `n` abstract values (anything, in dead code).
fn pop(stack: &mut Vec<Value>, n: usize, dead: bool, floor: usize, index: u32) -> Result<Vec<Value>, NotStateless> {
    if dead {
        // Unreachable code: operand types are polymorphic; nothing here runs.
        return Ok(vec![Value::Other; n]);
    }
    if stack.len() < floor + n {
        return Err(format!("function {index} has an operand stack the check cannot follow"));
    }
    Ok(stack.split_off(stack.len() - n))
}

fn op_name(op: &Operator<'_>) -> String {
    let name = format!("{op:?}");
    name.split([' ', '{', '('])
        .next()
        .unwrap_or("an instruction")
        .to_string()
}

/// Bytes a store writes, for the stores a frame may use.
fn store_width(op: &Operator<'_>) -> Option<u64> {
    use Operator::*;
    Some(match op {
        I32Store { .. } | F32Store { .. } | I64Store32 { .. } => 4,
        I64Store { .. } | F64Store { .. } => 8,
        I32Store8 { .. } | I64Store8 { .. } => 1,
        I32Store16 { .. } | I64Store16 { .. } => 2,
        _ => return None,
    })
}

fn store_memarg(op: &Operator<'_>) -> Option<MemArg> {
    use Operator::*;
    match op {
        I32Store { memarg }
        | F32Store { memarg }
        | I64Store32 { memarg }
        | I64Store { memarg }
        | F64Store { memarg }
        | I32Store8 { memarg }
        | I64Store8 { memarg }
        | I32Store16 { memarg }
        | I64Store16 { memarg } => Some(*memarg),
        _ => None,
    }
}

/// `(values popped, values pushed)` of the instructions that read at most
/// and write only the operand stack; `None` for anything else. Control
/// flow, locals, calls and stores are handled by the caller.
fn stack_effect(op: &Operator<'_>) -> Option<(usize, usize)> {
    use Operator::*;
    Some(match op {
        Nop => (0, 0),
        Drop => (1, 0),
        Select | TypedSelect { .. } => (3, 1),
        GlobalGet { .. } | MemorySize { .. } => (0, 1),
        I32Const { .. } | I64Const { .. } | F32Const { .. } | F64Const { .. } => (0, 1),
        I32Load { .. }
        | I64Load { .. }
        | F32Load { .. }
        | F64Load { .. }
        | I32Load8S { .. }
        | I32Load8U { .. }
        | I32Load16S { .. }
        | I32Load16U { .. }
        | I64Load8S { .. }
        | I64Load8U { .. }
        | I64Load16S { .. }
        | I64Load16U { .. }
        | I64Load32S { .. }
        | I64Load32U { .. } => (1, 1),
        // Unary: tests, bit counts, float rounding, conversions.
        I32Eqz | I64Eqz | I32Clz | I32Ctz | I32Popcnt | I64Clz | I64Ctz | I64Popcnt | F32Abs | F32Neg | F32Ceil
        | F32Floor | F32Trunc | F32Nearest | F32Sqrt | F64Abs | F64Neg | F64Ceil | F64Floor | F64Trunc | F64Nearest
        | F64Sqrt | I32WrapI64 | I32TruncF32S | I32TruncF32U | I32TruncF64S | I32TruncF64U | I64ExtendI32S
        | I64ExtendI32U | I64TruncF32S | I64TruncF32U | I64TruncF64S | I64TruncF64U | F32ConvertI32S
        | F32ConvertI32U | F32ConvertI64S | F32ConvertI64U | F32DemoteF64 | F64ConvertI32S | F64ConvertI32U
        | F64ConvertI64S | F64ConvertI64U | F64PromoteF32 | I32ReinterpretF32 | I64ReinterpretF64
        | F32ReinterpretI32 | F64ReinterpretI64 | I32Extend8S | I32Extend16S | I64Extend8S | I64Extend16S
        | I64Extend32S | I32TruncSatF32S | I32TruncSatF32U | I32TruncSatF64S | I32TruncSatF64U | I64TruncSatF32S
        | I64TruncSatF32U | I64TruncSatF64S | I64TruncSatF64U => (1, 1),
        // Binary: comparisons and arithmetic.
        I32Eq | I32Ne | I32LtS | I32LtU | I32GtS | I32GtU | I32LeS | I32LeU | I32GeS | I32GeU | I64Eq | I64Ne
        | I64LtS | I64LtU | I64GtS | I64GtU | I64LeS | I64LeU | I64GeS | I64GeU | F32Eq | F32Ne | F32Lt | F32Gt
        | F32Le | F32Ge | F64Eq | F64Ne | F64Lt | F64Gt | F64Le | F64Ge | I32Add | I32Sub | I32Mul | I32DivS
        | I32DivU | I32RemS | I32RemU | I32And | I32Or | I32Xor | I32Shl | I32ShrS | I32ShrU | I32Rotl | I32Rotr
        | I64Add | I64Sub | I64Mul | I64DivS | I64DivU | I64RemS | I64RemU | I64And | I64Or | I64Xor | I64Shl
        | I64ShrS | I64ShrU | I64Rotl | I64Rotr | F32Add | F32Sub | F32Mul | F32Div | F32Min | F32Max | F32Copysign
        | F64Add | F64Sub | F64Mul | F64Div | F64Min | F64Max | F64Copysign => (2, 1),
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
