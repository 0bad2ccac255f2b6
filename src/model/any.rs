//! A model whose dtype is chosen at run time. The service holds these; each method
//! dispatches to `Model<f32>` or `Model<f64>`.
use super::Model;
use super::spec::{DType, ModelSpec};
use crate::engine::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub enum AnyModel {
    F32(Model<f32>),
    F64(Model<f64>),
}

/// Runs `$body` with `$m` bound to the typed model inside an `AnyModel`.
#[macro_export]
macro_rules! with_model {
    ($any:expr, $m:ident => $body:expr) => {
        match $any {
            $crate::model::AnyModel::F32($m) => $body,
            $crate::model::AnyModel::F64($m) => $body,
        }
    };
}

impl AnyModel {
    pub fn new(spec: ModelSpec) -> Result<Self> {
        Ok(match spec.dtype {
            DType::F32 => AnyModel::F32(Model::new(spec)?),
            DType::F64 => AnyModel::F64(Model::new(spec)?),
        })
    }

    pub fn spec(&self) -> &ModelSpec {
        with_model!(self, m => m.net().spec())
    }

    pub fn step(&self) -> u64 {
        with_model!(self, m => m.step())
    }

    pub fn parameter_count(&self) -> usize {
        with_model!(self, m => m.net().parameter_count())
    }
}
