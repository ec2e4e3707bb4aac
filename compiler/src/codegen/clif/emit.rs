//! The function body: the entry block reads the input pointers, then each stage of the plan
//! emits its loop nest, in node order (operands before users).

use super::contract::Gemm;
use super::nest::{Env, Mode, Nest};
use super::plan::{HelperOp, Place, Plan};
use super::postprocess::{Buffers, Scale};
use super::{axis_bits, DataObject, Import, CONTRACT, HELPER};
use crate::axes::AxisSet;
use crate::dims::Dims;
use crate::ir::{Kernel, NodeId, Op};
use cranelift_codegen::ir::{
    immediates::Imm64, types, AbiParam, ExtFuncData, ExternalName, FuncRef, Function, GlobalValueData,
    InstBuilder, MemFlagsData, Signature, UserExternalName, Value,
};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use std::collections::HashMap;

/// The state of one function being built.
pub(super) struct Cx<'f, 'k> {
    pub b: FunctionBuilder<'f>,
    pub kernel: &'k Kernel,
    pub plan: &'k Plan,
    pub sizes: Dims,
    /// Base pointer of each input of the image.
    inputs: Vec<Value>,
    out: Value,
    scratch: Value,
    call_conv: cranelift_codegen::isa::CallConv,
    imports: Vec<Import>,
    funcs: HashMap<&'static str, FuncRef>,
}

/// What [`build`] declared: the functions the code calls and the data it reads.
pub(super) struct Linked {
    pub imports: Vec<Import>,
    pub data: Vec<DataObject>,
}

/// Fills `function`'s body; with `scale`, the program's map goes to scratch (past the stages'
/// `plan.scratch_bytes`) and the post-processing writes it to `out`.
pub(super) fn build(
    function: &mut Function,
    kernel: &Kernel,
    plan: &Plan,
    sizes: Dims,
    scale: Option<Scale>,
    target: TargetFrontendConfig,
) -> Linked {
    let mut context = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(function, &mut context);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let inputs = (0..kernel.inputs.len())
        .map(|i| {
            b.ins().load(
                types::I64,
                MemFlagsData::trusted().with_readonly(),
                params[0],
                8 * i as i32,
            )
        })
        .collect();
    let mut data = Vec::new();
    let post = scale.map(|scale| {
        let [h, w] = scale.from;
        let map = b.ins().iadd_imm_s(params[2], plan.scratch_bytes as i64);
        let rows = b.ins().iadd_imm_s(map, (h * w * 4).next_multiple_of(16) as i64);
        let name_ref = b
            .func
            .declare_imported_user_function(UserExternalName::new(DATA_NAMESPACE, 0));
        let table = b.func.create_global_value(GlobalValueData::Symbol {
            name: ExternalName::user(name_ref),
            offset: Imm64::new(0),
            colocated: false,
            tls: false,
        });
        data.push(DataObject {
            name_ref,
            bytes: scale.table(),
        });
        let taps = b.ins().symbol_value(types::I64, table);
        (
            scale,
            Buffers {
                map,
                rows,
                out: params[1],
                raw: scale.keep_raw.then(|| params[3]),
                taps,
            },
        )
    });
    let mut cx = Cx {
        b,
        kernel,
        plan,
        sizes,
        inputs,
        out: post.as_ref().map_or(params[1], |(_, at)| at.map),
        scratch: params[2],
        call_conv: target.default_call_conv,
        imports: Vec::new(),
        funcs: HashMap::new(),
    };
    cx.emit_stages(&plan.stages);
    match post {
        Some((scale, at)) => {
            let bad = cx.post_process(scale, at);
            cx.b.ins().return_(&[bad]);
        }
        None => {
            cx.b.ins().return_(&[]);
        }
    }
    cx.b.seal_all_blocks();
    let imports = std::mem::take(&mut cx.imports);
    cx.b.finalize(target);
    Linked { imports, data }
}

/// The namespace of data objects' user external names, as `cranelift_module` numbers them
/// (functions are namespace 0).
const DATA_NAMESPACE: u32 = 1;

impl Cx<'_, '_> {
    /// The base address of a materialized value.
    pub fn base(&mut self, place: Place) -> Value {
        match place {
            Place::Input(i) => self.inputs[i as usize],
            Place::Out => self.out,
            Place::Scratch(offset) => self.b.ins().iadd_imm_s(self.scratch, offset as i64),
        }
    }

    pub fn scratch_at(&mut self, offset: usize) -> Value {
        self.b.ins().iadd_imm_s(self.scratch, offset as i64)
    }

    /// Where `id`'s value lives, if a stage has stored it.
    pub fn place(&self, id: NodeId) -> Option<Place> {
        self.plan.place[id.index()]
    }

    /// A function the code calls, declared on first use.
    pub fn func(&mut self, name: &'static str) -> FuncRef {
        if let Some(f) = self.funcs.get(name) {
            return *f;
        }
        let mut signature = Signature::new(self.call_conv);
        if name == HELPER {
            signature.params = vec![AbiParam::new(types::I64); 10];
        } else if name == CONTRACT {
            signature.params = vec![AbiParam::new(types::I64); 12];
        } else {
            let arity = if name == "powf" { 2 } else { 1 };
            signature.params = vec![AbiParam::new(types::F32); arity];
            signature.returns = vec![AbiParam::new(types::F32)];
        }
        let sig_ref = self.b.import_signature(signature.clone());
        let index = self.imports.len() as u32 + 1;
        let name_ref = self
            .b
            .func
            .declare_imported_user_function(UserExternalName::new(0, index));
        let func = self.b.import_function(ExtFuncData {
            name: ExternalName::user(name_ref),
            signature: sig_ref,
            colocated: false,
            patchable: false,
        });
        self.imports.push(Import {
            name,
            signature,
            name_ref,
        });
        self.funcs.insert(name, func);
        func
    }

    /// Calls the runtime helper on the node's materialized operand.
    pub(super) fn helper_stage(&mut self, node: NodeId, op: HelperOp) {
        let n = *self.kernel.node(node);
        // `index` and `size` read no operand: their own buffer stands in for it.
        let (x, axes) = match n.op {
            Op::Reduce(_, axes, x) | Op::Softmax(axes, x) | Op::Normalize(axes, x) => (x, axes),
            Op::Pc1(axis, x) => (x, AxisSet::SCALAR.with(axis)),
            Op::Index(axis) => (node, AxisSet::SCALAR.with(axis)),
            Op::Size(axes) => (node, axes),
            _ => return,
        };
        let (Some(src), Some(dst)) = (self.place(x), self.place(node)) else {
            unreachable!("the plan materializes helper operands and results")
        };
        let src = self.base(src);
        let dst = self.base(dst);
        let x_ty = self.kernel.node(x).ty;
        let mut args = vec![src, dst];
        let numbers = [op as i64, axis_bits(x_ty) as i64, axis_bits(axes) as i64];
        let sizes = self.sizes.array().map(|s| s as i64);
        for v in numbers.into_iter().chain(sizes) {
            args.push(self.b.ins().iconst(types::I64, v));
        }
        let helper = self.func(HELPER);
        self.b.ins().call(helper, &args);
    }

    /// Calls the runtime's GEMM on the materialized operands of a contraction.
    pub(super) fn contract_stage(&mut self, node: NodeId, a: NodeId, b: NodeId, gemm: Gemm) {
        let (Some(a), Some(b), Some(c)) = (self.place(a), self.place(b), self.place(node)) else {
            unreachable!("the plan materializes a contraction's operands and result")
        };
        let mut args = vec![self.base(a), self.base(b), self.base(c)];
        for v in gemm.arguments() {
            args.push(self.b.ins().iconst(types::I64, v));
        }
        let contract = self.func(CONTRACT);
        self.b.ins().call(contract, &args);
    }

    /// Offsets all start at 0, before any loop.
    pub fn env0(&mut self, nest: &Nest) -> Env {
        let zero = self.b.ins().iconst(types::I64, 0);
        Env {
            vals: HashMap::new(),
            splats: HashMap::new(),
            offsets: vec![zero; nest.types.len()],
            fresh: None,
        }
    }

    /// Stores a value of `width` bytes per lane at `base + offset * width`.
    pub fn store(&mut self, mode: Mode, value: Value, base: Value, offset: Value, width: i64) {
        let addr = self.address(base, offset, width);
        let flags = match mode {
            Mode::Scalar => MemFlagsData::trusted(),
            Mode::Vector => MemFlagsData::new().with_notrap(),
        };
        self.b.ins().store(flags, value, addr, 0);
    }

    pub fn address(&mut self, base: Value, offset: Value, width: i64) -> Value {
        let bytes = self.b.ins().imul_imm_s(offset, width);
        self.b.ins().iadd(base, bytes)
    }
}
