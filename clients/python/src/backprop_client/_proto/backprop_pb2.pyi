from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Activation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVATION_UNSPECIFIED: _ClassVar[Activation]
    ACTIVATION_RELU: _ClassVar[Activation]
    ACTIVATION_SIGMOID: _ClassVar[Activation]
    ACTIVATION_TANH: _ClassVar[Activation]
    ACTIVATION_LEAKY_RELU: _ClassVar[Activation]
    ACTIVATION_ELU: _ClassVar[Activation]
    ACTIVATION_MAXOUT: _ClassVar[Activation]
    ACTIVATION_GELU: _ClassVar[Activation]

class GeluApproximate(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GELU_APPROXIMATE_UNSPECIFIED: _ClassVar[GeluApproximate]
    GELU_APPROXIMATE_NONE: _ClassVar[GeluApproximate]
    GELU_APPROXIMATE_TANH: _ClassVar[GeluApproximate]

class LossKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOSS_KIND_UNSPECIFIED: _ClassVar[LossKind]
    LOSS_KIND_SVM: _ClassVar[LossKind]
    LOSS_KIND_SOFTMAX: _ClassVar[LossKind]

class OptimizerKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPTIMIZER_KIND_UNSPECIFIED: _ClassVar[OptimizerKind]
    OPTIMIZER_KIND_SGD: _ClassVar[OptimizerKind]
    OPTIMIZER_KIND_MOMENTUM: _ClassVar[OptimizerKind]
    OPTIMIZER_KIND_RMSPROP: _ClassVar[OptimizerKind]
    OPTIMIZER_KIND_ADAM: _ClassVar[OptimizerKind]
    OPTIMIZER_KIND_ADAMW: _ClassVar[OptimizerKind]

class InitScheme(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INIT_SCHEME_UNSPECIFIED: _ClassVar[InitScheme]
    INIT_SCHEME_GAUSSIAN: _ClassVar[InitScheme]
    INIT_SCHEME_HE: _ClassVar[InitScheme]
    INIT_SCHEME_XAVIER: _ClassVar[InitScheme]

class Dtype(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[Dtype]
    DTYPE_F32: _ClassVar[Dtype]
    DTYPE_F64: _ClassVar[Dtype]

class LocalRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOCAL_RULE_UNSPECIFIED: _ClassVar[LocalRule]
    LOCAL_RULE_ELEMENTWISE: _ClassVar[LocalRule]
    LOCAL_RULE_MATMUL_RIGHT: _ClassVar[LocalRule]
    LOCAL_RULE_MATMUL_LEFT: _ClassVar[LocalRule]
    LOCAL_RULE_SCALE: _ClassVar[LocalRule]

class Sampling(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLING_UNSPECIFIED: _ClassVar[Sampling]
    SAMPLING_SHUFFLE: _ClassVar[Sampling]
    SAMPLING_WITH_REPLACEMENT: _ClassVar[Sampling]

class ScheduleKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEDULE_KIND_UNSPECIFIED: _ClassVar[ScheduleKind]
    SCHEDULE_KIND_CONSTANT: _ClassVar[ScheduleKind]
    SCHEDULE_KIND_EPOCH_DECAY: _ClassVar[ScheduleKind]
    SCHEDULE_KIND_STEP: _ClassVar[ScheduleKind]
    SCHEDULE_KIND_COSINE: _ClassVar[ScheduleKind]

class Monitor(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MONITOR_UNSPECIFIED: _ClassVar[Monitor]
    MONITOR_VALIDATION_LOSS: _ClassVar[Monitor]
    MONITOR_VALIDATION_ACCURACY: _ClassVar[Monitor]

class FitEnd(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIT_END_UNSPECIFIED: _ClassVar[FitEnd]
    FIT_END_COMPLETED: _ClassVar[FitEnd]
    FIT_END_EARLY_STOPPED: _ClassVar[FitEnd]
    FIT_END_MAX_STEPS: _ClassVar[FitEnd]
    FIT_END_CANCELLED: _ClassVar[FitEnd]
    FIT_END_FAILED: _ClassVar[FitEnd]
ACTIVATION_UNSPECIFIED: Activation
ACTIVATION_RELU: Activation
ACTIVATION_SIGMOID: Activation
ACTIVATION_TANH: Activation
ACTIVATION_LEAKY_RELU: Activation
ACTIVATION_ELU: Activation
ACTIVATION_MAXOUT: Activation
ACTIVATION_GELU: Activation
GELU_APPROXIMATE_UNSPECIFIED: GeluApproximate
GELU_APPROXIMATE_NONE: GeluApproximate
GELU_APPROXIMATE_TANH: GeluApproximate
LOSS_KIND_UNSPECIFIED: LossKind
LOSS_KIND_SVM: LossKind
LOSS_KIND_SOFTMAX: LossKind
OPTIMIZER_KIND_UNSPECIFIED: OptimizerKind
OPTIMIZER_KIND_SGD: OptimizerKind
OPTIMIZER_KIND_MOMENTUM: OptimizerKind
OPTIMIZER_KIND_RMSPROP: OptimizerKind
OPTIMIZER_KIND_ADAM: OptimizerKind
OPTIMIZER_KIND_ADAMW: OptimizerKind
INIT_SCHEME_UNSPECIFIED: InitScheme
INIT_SCHEME_GAUSSIAN: InitScheme
INIT_SCHEME_HE: InitScheme
INIT_SCHEME_XAVIER: InitScheme
DTYPE_UNSPECIFIED: Dtype
DTYPE_F32: Dtype
DTYPE_F64: Dtype
LOCAL_RULE_UNSPECIFIED: LocalRule
LOCAL_RULE_ELEMENTWISE: LocalRule
LOCAL_RULE_MATMUL_RIGHT: LocalRule
LOCAL_RULE_MATMUL_LEFT: LocalRule
LOCAL_RULE_SCALE: LocalRule
SAMPLING_UNSPECIFIED: Sampling
SAMPLING_SHUFFLE: Sampling
SAMPLING_WITH_REPLACEMENT: Sampling
SCHEDULE_KIND_UNSPECIFIED: ScheduleKind
SCHEDULE_KIND_CONSTANT: ScheduleKind
SCHEDULE_KIND_EPOCH_DECAY: ScheduleKind
SCHEDULE_KIND_STEP: ScheduleKind
SCHEDULE_KIND_COSINE: ScheduleKind
MONITOR_UNSPECIFIED: Monitor
MONITOR_VALIDATION_LOSS: Monitor
MONITOR_VALIDATION_ACCURACY: Monitor
FIT_END_UNSPECIFIED: FitEnd
FIT_END_COMPLETED: FitEnd
FIT_END_EARLY_STOPPED: FitEnd
FIT_END_MAX_STEPS: FitEnd
FIT_END_CANCELLED: FitEnd
FIT_END_FAILED: FitEnd

class Tensor(_message.Message):
    __slots__ = ("shape", "values", "values_f64", "raw", "raw_dtype")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    VALUES_F64_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    RAW_DTYPE_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    values_f64: _containers.RepeatedScalarFieldContainer[float]
    raw: bytes
    raw_dtype: Dtype
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., values_f64: _Optional[_Iterable[float]] = ..., raw: _Optional[bytes] = ..., raw_dtype: _Optional[_Union[Dtype, str]] = ...) -> None: ...

class HiddenLayer(_message.Message):
    __slots__ = ("units", "activation", "leaky_slope", "elu_alpha", "maxout_pieces", "gelu_approximate")
    UNITS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    LEAKY_SLOPE_FIELD_NUMBER: _ClassVar[int]
    ELU_ALPHA_FIELD_NUMBER: _ClassVar[int]
    MAXOUT_PIECES_FIELD_NUMBER: _ClassVar[int]
    GELU_APPROXIMATE_FIELD_NUMBER: _ClassVar[int]
    units: int
    activation: Activation
    leaky_slope: float
    elu_alpha: float
    maxout_pieces: int
    gelu_approximate: GeluApproximate
    def __init__(self, units: _Optional[int] = ..., activation: _Optional[_Union[Activation, str]] = ..., leaky_slope: _Optional[float] = ..., elu_alpha: _Optional[float] = ..., maxout_pieces: _Optional[int] = ..., gelu_approximate: _Optional[_Union[GeluApproximate, str]] = ...) -> None: ...

class Optimizer(_message.Message):
    __slots__ = ("kind", "learning_rate", "momentum", "nesterov", "decay_rate", "beta1", "beta2", "epsilon", "weight_decay")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    NESTEROV_FIELD_NUMBER: _ClassVar[int]
    DECAY_RATE_FIELD_NUMBER: _ClassVar[int]
    BETA1_FIELD_NUMBER: _ClassVar[int]
    BETA2_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    kind: OptimizerKind
    learning_rate: float
    momentum: float
    nesterov: bool
    decay_rate: float
    beta1: float
    beta2: float
    epsilon: float
    weight_decay: float
    def __init__(self, kind: _Optional[_Union[OptimizerKind, str]] = ..., learning_rate: _Optional[float] = ..., momentum: _Optional[float] = ..., nesterov: _Optional[bool] = ..., decay_rate: _Optional[float] = ..., beta1: _Optional[float] = ..., beta2: _Optional[float] = ..., epsilon: _Optional[float] = ..., weight_decay: _Optional[float] = ...) -> None: ...

class Init(_message.Message):
    __slots__ = ("scheme", "weight_scale", "seed")
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_SCALE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    scheme: InitScheme
    weight_scale: float
    seed: int
    def __init__(self, scheme: _Optional[_Union[InitScheme, str]] = ..., weight_scale: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class ModelSpec(_message.Message):
    __slots__ = ("input_dim", "hidden", "num_classes", "no_bias", "loss", "svm_margin", "l2", "optimizer", "init", "dtype", "standardize", "class_names")
    INPUT_DIM_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    NO_BIAS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    SVM_MARGIN_FIELD_NUMBER: _ClassVar[int]
    L2_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    INIT_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    STANDARDIZE_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    input_dim: int
    hidden: _containers.RepeatedCompositeFieldContainer[HiddenLayer]
    num_classes: int
    no_bias: bool
    loss: LossKind
    svm_margin: float
    l2: float
    optimizer: Optimizer
    init: Init
    dtype: Dtype
    standardize: Standardization
    class_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, input_dim: _Optional[int] = ..., hidden: _Optional[_Iterable[_Union[HiddenLayer, _Mapping]]] = ..., num_classes: _Optional[int] = ..., no_bias: _Optional[bool] = ..., loss: _Optional[_Union[LossKind, str]] = ..., svm_margin: _Optional[float] = ..., l2: _Optional[float] = ..., optimizer: _Optional[_Union[Optimizer, _Mapping]] = ..., init: _Optional[_Union[Init, _Mapping]] = ..., dtype: _Optional[_Union[Dtype, str]] = ..., standardize: _Optional[_Union[Standardization, _Mapping]] = ..., class_names: _Optional[_Iterable[str]] = ...) -> None: ...

class Standardization(_message.Message):
    __slots__ = ("mean", "std")
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ...) -> None: ...

class CreateModelRequest(_message.Message):
    __slots__ = ("spec", "name", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SPEC_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    spec: ModelSpec
    name: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, spec: _Optional[_Union[ModelSpec, _Mapping]] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModelMetadata(_message.Message):
    __slots__ = ("name", "labels", "created_time", "dataset_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    created_time: float
    dataset_id: str
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., created_time: _Optional[float] = ..., dataset_id: _Optional[str] = ...) -> None: ...

class UpdateModelRequest(_message.Message):
    __slots__ = ("model_id", "name", "set_labels", "remove_labels")
    class SetLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SET_LABELS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_LABELS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    name: str
    set_labels: _containers.ScalarMap[str, str]
    remove_labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_id: _Optional[str] = ..., name: _Optional[str] = ..., set_labels: _Optional[_Mapping[str, str]] = ..., remove_labels: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateModelResponse(_message.Message):
    __slots__ = ("model_id", "parameter_count", "spec")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    parameter_count: int
    spec: ModelSpec
    def __init__(self, model_id: _Optional[str] = ..., parameter_count: _Optional[int] = ..., spec: _Optional[_Union[ModelSpec, _Mapping]] = ...) -> None: ...

class Losses(_message.Message):
    __slots__ = ("data_loss", "reg_loss", "total_loss")
    DATA_LOSS_FIELD_NUMBER: _ClassVar[int]
    REG_LOSS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    data_loss: float
    reg_loss: float
    total_loss: float
    def __init__(self, data_loss: _Optional[float] = ..., reg_loss: _Optional[float] = ..., total_loss: _Optional[float] = ...) -> None: ...

class ForwardRequest(_message.Message):
    __slots__ = ("model_id", "x", "labels", "probabilities")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    x: Tensor
    labels: _containers.RepeatedScalarFieldContainer[int]
    probabilities: bool
    def __init__(self, model_id: _Optional[str] = ..., x: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Iterable[int]] = ..., probabilities: _Optional[bool] = ...) -> None: ...

class ForwardResponse(_message.Message):
    __slots__ = ("scores", "predictions", "losses", "accuracy", "probabilities")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    scores: Tensor
    predictions: _containers.RepeatedScalarFieldContainer[int]
    losses: Losses
    accuracy: float
    probabilities: Tensor
    def __init__(self, scores: _Optional[_Union[Tensor, _Mapping]] = ..., predictions: _Optional[_Iterable[int]] = ..., losses: _Optional[_Union[Losses, _Mapping]] = ..., accuracy: _Optional[float] = ..., probabilities: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class NamedTensor(_message.Message):
    __slots__ = ("name", "tensor")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    tensor: Tensor
    def __init__(self, name: _Optional[str] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class BackwardRequest(_message.Message):
    __slots__ = ("model_id", "x", "labels", "upstream", "return_input_grad")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    RETURN_INPUT_GRAD_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    x: Tensor
    labels: _containers.RepeatedScalarFieldContainer[int]
    upstream: Tensor
    return_input_grad: bool
    def __init__(self, model_id: _Optional[str] = ..., x: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Iterable[int]] = ..., upstream: _Optional[_Union[Tensor, _Mapping]] = ..., return_input_grad: _Optional[bool] = ...) -> None: ...

class BackwardResponse(_message.Message):
    __slots__ = ("losses", "gradients", "input_grad")
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_GRAD_FIELD_NUMBER: _ClassVar[int]
    losses: Losses
    gradients: _containers.RepeatedCompositeFieldContainer[NamedTensor]
    input_grad: Tensor
    def __init__(self, losses: _Optional[_Union[Losses, _Mapping]] = ..., gradients: _Optional[_Iterable[_Union[NamedTensor, _Mapping]]] = ..., input_grad: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class TrainStepRequest(_message.Message):
    __slots__ = ("model_id", "x", "labels", "learning_rate")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    x: Tensor
    labels: _containers.RepeatedScalarFieldContainer[int]
    learning_rate: float
    def __init__(self, model_id: _Optional[str] = ..., x: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Iterable[int]] = ..., learning_rate: _Optional[float] = ...) -> None: ...

class TrainStepResponse(_message.Message):
    __slots__ = ("losses", "accuracy", "step")
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    losses: Losses
    accuracy: float
    step: int
    def __init__(self, losses: _Optional[_Union[Losses, _Mapping]] = ..., accuracy: _Optional[float] = ..., step: _Optional[int] = ...) -> None: ...

class TrainStreamRequest(_message.Message):
    __slots__ = ("model_id", "sequence", "x", "labels", "learning_rate")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    sequence: int
    x: Tensor
    labels: _containers.RepeatedScalarFieldContainer[int]
    learning_rate: float
    def __init__(self, model_id: _Optional[str] = ..., sequence: _Optional[int] = ..., x: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Iterable[int]] = ..., learning_rate: _Optional[float] = ...) -> None: ...

class TrainStreamResponse(_message.Message):
    __slots__ = ("sequence", "step", "error")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    step: TrainStepResponse
    error: BatchError
    def __init__(self, sequence: _Optional[int] = ..., step: _Optional[_Union[TrainStepResponse, _Mapping]] = ..., error: _Optional[_Union[BatchError, _Mapping]] = ...) -> None: ...

class BatchError(_message.Message):
    __slots__ = ("code", "message", "reason", "field")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    reason: str
    field: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class ApplyGradientsRequest(_message.Message):
    __slots__ = ("model_id", "gradients")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    gradients: _containers.RepeatedCompositeFieldContainer[NamedTensor]
    def __init__(self, model_id: _Optional[str] = ..., gradients: _Optional[_Iterable[_Union[NamedTensor, _Mapping]]] = ...) -> None: ...

class ApplyGradientsResponse(_message.Message):
    __slots__ = ("step",)
    STEP_FIELD_NUMBER: _ClassVar[int]
    step: int
    def __init__(self, step: _Optional[int] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("model_id", "x", "labels")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    x: Tensor
    labels: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, model_id: _Optional[str] = ..., x: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Iterable[int]] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("losses", "accuracy", "num_examples")
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    losses: Losses
    accuracy: float
    num_examples: int
    def __init__(self, losses: _Optional[_Union[Losses, _Mapping]] = ..., accuracy: _Optional[float] = ..., num_examples: _Optional[int] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model_id", "include_values", "raw_values")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VALUES_FIELD_NUMBER: _ClassVar[int]
    RAW_VALUES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    include_values: bool
    raw_values: bool
    def __init__(self, model_id: _Optional[str] = ..., include_values: _Optional[bool] = ..., raw_values: _Optional[bool] = ...) -> None: ...

class ParameterInfo(_message.Message):
    __slots__ = ("name", "shape", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    value: Tensor
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model_id", "spec", "step", "parameter_count", "parameters", "metadata", "last_step", "last_epoch")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LAST_STEP_FIELD_NUMBER: _ClassVar[int]
    LAST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    spec: ModelSpec
    step: int
    parameter_count: int
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterInfo]
    metadata: ModelMetadata
    last_step: HistoryStep
    last_epoch: HistoryEpoch
    def __init__(self, model_id: _Optional[str] = ..., spec: _Optional[_Union[ModelSpec, _Mapping]] = ..., step: _Optional[int] = ..., parameter_count: _Optional[int] = ..., parameters: _Optional[_Iterable[_Union[ParameterInfo, _Mapping]]] = ..., metadata: _Optional[_Union[ModelMetadata, _Mapping]] = ..., last_step: _Optional[_Union[HistoryStep, _Mapping]] = ..., last_epoch: _Optional[_Union[HistoryEpoch, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "name", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    name: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModelSummary(_message.Message):
    __slots__ = ("model_id", "spec", "step", "parameter_count", "idle_seconds", "metadata", "last_step", "last_epoch")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    IDLE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LAST_STEP_FIELD_NUMBER: _ClassVar[int]
    LAST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    spec: ModelSpec
    step: int
    parameter_count: int
    idle_seconds: float
    metadata: ModelMetadata
    last_step: HistoryStep
    last_epoch: HistoryEpoch
    def __init__(self, model_id: _Optional[str] = ..., spec: _Optional[_Union[ModelSpec, _Mapping]] = ..., step: _Optional[int] = ..., parameter_count: _Optional[int] = ..., idle_seconds: _Optional[float] = ..., metadata: _Optional[_Union[ModelMetadata, _Mapping]] = ..., last_step: _Optional[_Union[HistoryStep, _Mapping]] = ..., last_epoch: _Optional[_Union[HistoryEpoch, _Mapping]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token", "replica")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelSummary]
    next_page_token: str
    replica: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., replica: _Optional[str] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GradientCheckRequest(_message.Message):
    __slots__ = ("model_id", "x", "labels", "max_elements_per_parameter")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_ELEMENTS_PER_PARAMETER_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    x: Tensor
    labels: _containers.RepeatedScalarFieldContainer[int]
    max_elements_per_parameter: int
    def __init__(self, model_id: _Optional[str] = ..., x: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Iterable[int]] = ..., max_elements_per_parameter: _Optional[int] = ...) -> None: ...

class ParameterError(_message.Message):
    __slots__ = ("name", "max_relative_error", "elements_checked", "worst_element")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_RELATIVE_ERROR_FIELD_NUMBER: _ClassVar[int]
    ELEMENTS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    WORST_ELEMENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    max_relative_error: float
    elements_checked: int
    worst_element: int
    def __init__(self, name: _Optional[str] = ..., max_relative_error: _Optional[float] = ..., elements_checked: _Optional[int] = ..., worst_element: _Optional[int] = ...) -> None: ...

class GradientCheckResponse(_message.Message):
    __slots__ = ("errors", "max_relative_error")
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    MAX_RELATIVE_ERROR_FIELD_NUMBER: _ClassVar[int]
    errors: _containers.RepeatedCompositeFieldContainer[ParameterError]
    max_relative_error: float
    def __init__(self, errors: _Optional[_Iterable[_Union[ParameterError, _Mapping]]] = ..., max_relative_error: _Optional[float] = ...) -> None: ...

class TraceStepRequest(_message.Message):
    __slots__ = ("model_id", "x", "labels", "shapes_only")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SHAPES_ONLY_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    x: Tensor
    labels: _containers.RepeatedScalarFieldContainer[int]
    shapes_only: bool
    def __init__(self, model_id: _Optional[str] = ..., x: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Iterable[int]] = ..., shapes_only: _Optional[bool] = ...) -> None: ...

class TraceEdge(_message.Message):
    __slots__ = ("input", "rule", "local_grad", "downstream")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_GRAD_FIELD_NUMBER: _ClassVar[int]
    DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    input: int
    rule: LocalRule
    local_grad: Tensor
    downstream: Tensor
    def __init__(self, input: _Optional[int] = ..., rule: _Optional[_Union[LocalRule, str]] = ..., local_grad: _Optional[_Union[Tensor, _Mapping]] = ..., downstream: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class TraceNode(_message.Message):
    __slots__ = ("id", "kind", "inputs", "shape", "leaf_name", "data_path", "reg_path", "value", "grad", "edges")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    LEAF_NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_PATH_FIELD_NUMBER: _ClassVar[int]
    REG_PATH_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    GRAD_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    id: int
    kind: str
    inputs: _containers.RepeatedScalarFieldContainer[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    leaf_name: str
    data_path: bool
    reg_path: bool
    value: Tensor
    grad: Tensor
    edges: _containers.RepeatedCompositeFieldContainer[TraceEdge]
    def __init__(self, id: _Optional[int] = ..., kind: _Optional[str] = ..., inputs: _Optional[_Iterable[int]] = ..., shape: _Optional[_Iterable[int]] = ..., leaf_name: _Optional[str] = ..., data_path: _Optional[bool] = ..., reg_path: _Optional[bool] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ..., grad: _Optional[_Union[Tensor, _Mapping]] = ..., edges: _Optional[_Iterable[_Union[TraceEdge, _Mapping]]] = ...) -> None: ...

class TraceStepResponse(_message.Message):
    __slots__ = ("nodes", "losses", "scores_node", "data_loss_node", "reg_loss_node", "loss_node", "with_values")
    NODES_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    SCORES_NODE_FIELD_NUMBER: _ClassVar[int]
    DATA_LOSS_NODE_FIELD_NUMBER: _ClassVar[int]
    REG_LOSS_NODE_FIELD_NUMBER: _ClassVar[int]
    LOSS_NODE_FIELD_NUMBER: _ClassVar[int]
    WITH_VALUES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[TraceNode]
    losses: Losses
    scores_node: int
    data_loss_node: int
    reg_loss_node: int
    loss_node: int
    with_values: bool
    def __init__(self, nodes: _Optional[_Iterable[_Union[TraceNode, _Mapping]]] = ..., losses: _Optional[_Union[Losses, _Mapping]] = ..., scores_node: _Optional[int] = ..., data_loss_node: _Optional[int] = ..., reg_loss_node: _Optional[int] = ..., loss_node: _Optional[int] = ..., with_values: _Optional[bool] = ...) -> None: ...

class ExportModelRequest(_message.Message):
    __slots__ = ("model_id", "chunk_bytes")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    chunk_bytes: int
    def __init__(self, model_id: _Optional[str] = ..., chunk_bytes: _Optional[int] = ...) -> None: ...

class CheckpointChunk(_message.Message):
    __slots__ = ("data", "offset", "total_bytes", "sha256")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    total_bytes: int
    sha256: str
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ImportModelResponse(_message.Message):
    __slots__ = ("model_id", "parameter_count", "spec", "step")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    parameter_count: int
    spec: ModelSpec
    step: int
    def __init__(self, model_id: _Optional[str] = ..., parameter_count: _Optional[int] = ..., spec: _Optional[_Union[ModelSpec, _Mapping]] = ..., step: _Optional[int] = ...) -> None: ...

class DatasetChunk(_message.Message):
    __slots__ = ("header", "first_row", "x", "labels")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    FIRST_ROW_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    header: DatasetHeader
    first_row: int
    x: bytes
    labels: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, header: _Optional[_Union[DatasetHeader, _Mapping]] = ..., first_row: _Optional[int] = ..., x: _Optional[bytes] = ..., labels: _Optional[_Iterable[int]] = ...) -> None: ...

class DatasetHeader(_message.Message):
    __slots__ = ("rows", "dim", "dtype", "sha256", "name")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    rows: int
    dim: int
    dtype: Dtype
    sha256: str
    name: str
    def __init__(self, rows: _Optional[int] = ..., dim: _Optional[int] = ..., dtype: _Optional[_Union[Dtype, str]] = ..., sha256: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class DatasetInfo(_message.Message):
    __slots__ = ("dataset_id", "name", "rows", "dim", "dtype", "sha256", "label_classes", "bytes", "idle_seconds")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    LABEL_CLASSES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    IDLE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    name: str
    rows: int
    dim: int
    dtype: Dtype
    sha256: str
    label_classes: int
    bytes: int
    idle_seconds: float
    def __init__(self, dataset_id: _Optional[str] = ..., name: _Optional[str] = ..., rows: _Optional[int] = ..., dim: _Optional[int] = ..., dtype: _Optional[_Union[Dtype, str]] = ..., sha256: _Optional[str] = ..., label_classes: _Optional[int] = ..., bytes: _Optional[int] = ..., idle_seconds: _Optional[float] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("dataset_id",)
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    def __init__(self, dataset_id: _Optional[str] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets", "next_page_token", "replica")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetInfo]
    next_page_token: str
    replica: str
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., replica: _Optional[str] = ...) -> None: ...

class DeleteDatasetRequest(_message.Message):
    __slots__ = ("dataset_id",)
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    def __init__(self, dataset_id: _Optional[str] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("kind", "decay", "step_epochs", "min_lr")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DECAY_FIELD_NUMBER: _ClassVar[int]
    STEP_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MIN_LR_FIELD_NUMBER: _ClassVar[int]
    kind: ScheduleKind
    decay: float
    step_epochs: int
    min_lr: float
    def __init__(self, kind: _Optional[_Union[ScheduleKind, str]] = ..., decay: _Optional[float] = ..., step_epochs: _Optional[int] = ..., min_lr: _Optional[float] = ...) -> None: ...

class EarlyStopping(_message.Message):
    __slots__ = ("monitor", "patience", "min_delta", "keep_last")
    MONITOR_FIELD_NUMBER: _ClassVar[int]
    PATIENCE_FIELD_NUMBER: _ClassVar[int]
    MIN_DELTA_FIELD_NUMBER: _ClassVar[int]
    KEEP_LAST_FIELD_NUMBER: _ClassVar[int]
    monitor: Monitor
    patience: int
    min_delta: float
    keep_last: bool
    def __init__(self, monitor: _Optional[_Union[Monitor, str]] = ..., patience: _Optional[int] = ..., min_delta: _Optional[float] = ..., keep_last: _Optional[bool] = ...) -> None: ...

class FitRequest(_message.Message):
    __slots__ = ("model_id", "dataset_id", "validation_dataset_id", "validation_fraction", "epochs", "max_steps", "batch_size", "seed", "sampling", "drop_last", "schedule", "progress_every", "train_sample", "early_stopping", "detach")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FRACTION_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    DROP_LAST_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_EVERY_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    dataset_id: str
    validation_dataset_id: str
    validation_fraction: float
    epochs: int
    max_steps: int
    batch_size: int
    seed: int
    sampling: Sampling
    drop_last: bool
    schedule: Schedule
    progress_every: int
    train_sample: int
    early_stopping: EarlyStopping
    detach: bool
    def __init__(self, model_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., validation_dataset_id: _Optional[str] = ..., validation_fraction: _Optional[float] = ..., epochs: _Optional[int] = ..., max_steps: _Optional[int] = ..., batch_size: _Optional[int] = ..., seed: _Optional[int] = ..., sampling: _Optional[_Union[Sampling, str]] = ..., drop_last: _Optional[bool] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., progress_every: _Optional[int] = ..., train_sample: _Optional[int] = ..., early_stopping: _Optional[_Union[EarlyStopping, _Mapping]] = ..., detach: _Optional[bool] = ...) -> None: ...

class FitEvent(_message.Message):
    __slots__ = ("index", "started", "progress", "epoch_end", "finished")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_END_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    index: int
    started: FitStarted
    progress: FitProgress
    epoch_end: FitEpochEnd
    finished: FitFinished
    def __init__(self, index: _Optional[int] = ..., started: _Optional[_Union[FitStarted, _Mapping]] = ..., progress: _Optional[_Union[FitProgress, _Mapping]] = ..., epoch_end: _Optional[_Union[FitEpochEnd, _Mapping]] = ..., finished: _Optional[_Union[FitFinished, _Mapping]] = ...) -> None: ...

class FitStarted(_message.Message):
    __slots__ = ("start_step", "train_rows", "validation_rows", "steps_per_epoch", "planned_steps")
    START_STEP_FIELD_NUMBER: _ClassVar[int]
    TRAIN_ROWS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ROWS_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PLANNED_STEPS_FIELD_NUMBER: _ClassVar[int]
    start_step: int
    train_rows: int
    validation_rows: int
    steps_per_epoch: int
    planned_steps: int
    def __init__(self, start_step: _Optional[int] = ..., train_rows: _Optional[int] = ..., validation_rows: _Optional[int] = ..., steps_per_epoch: _Optional[int] = ..., planned_steps: _Optional[int] = ...) -> None: ...

class FitProgress(_message.Message):
    __slots__ = ("step", "epoch", "losses", "accuracy", "learning_rate", "steps_per_second")
    STEP_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    step: int
    epoch: int
    losses: Losses
    accuracy: float
    learning_rate: float
    steps_per_second: float
    def __init__(self, step: _Optional[int] = ..., epoch: _Optional[int] = ..., losses: _Optional[_Union[Losses, _Mapping]] = ..., accuracy: _Optional[float] = ..., learning_rate: _Optional[float] = ..., steps_per_second: _Optional[float] = ...) -> None: ...

class FitEpochEnd(_message.Message):
    __slots__ = ("epoch", "step", "mean_loss", "train_accuracy", "validation_loss", "validation_accuracy", "improved", "learning_rate")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    MEAN_LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    IMPROVED_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    step: int
    mean_loss: float
    train_accuracy: float
    validation_loss: float
    validation_accuracy: float
    improved: bool
    learning_rate: float
    def __init__(self, epoch: _Optional[int] = ..., step: _Optional[int] = ..., mean_loss: _Optional[float] = ..., train_accuracy: _Optional[float] = ..., validation_loss: _Optional[float] = ..., validation_accuracy: _Optional[float] = ..., improved: _Optional[bool] = ..., learning_rate: _Optional[float] = ...) -> None: ...

class FitFinished(_message.Message):
    __slots__ = ("reason", "step", "steps", "epochs", "best_step", "best_value", "error")
    REASON_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BEST_STEP_FIELD_NUMBER: _ClassVar[int]
    BEST_VALUE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    reason: FitEnd
    step: int
    steps: int
    epochs: int
    best_step: int
    best_value: float
    error: BatchError
    def __init__(self, reason: _Optional[_Union[FitEnd, str]] = ..., step: _Optional[int] = ..., steps: _Optional[int] = ..., epochs: _Optional[int] = ..., best_step: _Optional[int] = ..., best_value: _Optional[float] = ..., error: _Optional[_Union[BatchError, _Mapping]] = ...) -> None: ...

class WatchFitRequest(_message.Message):
    __slots__ = ("model_id", "from_event")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_EVENT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    from_event: int
    def __init__(self, model_id: _Optional[str] = ..., from_event: _Optional[int] = ...) -> None: ...

class CancelFitRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class CancelFitResponse(_message.Message):
    __slots__ = ("cancelled", "step")
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    cancelled: bool
    step: int
    def __init__(self, cancelled: _Optional[bool] = ..., step: _Optional[int] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class HistoryStep(_message.Message):
    __slots__ = ("step", "data_loss", "reg_loss", "accuracy", "learning_rate", "time")
    STEP_FIELD_NUMBER: _ClassVar[int]
    DATA_LOSS_FIELD_NUMBER: _ClassVar[int]
    REG_LOSS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    step: int
    data_loss: float
    reg_loss: float
    accuracy: float
    learning_rate: float
    time: float
    def __init__(self, step: _Optional[int] = ..., data_loss: _Optional[float] = ..., reg_loss: _Optional[float] = ..., accuracy: _Optional[float] = ..., learning_rate: _Optional[float] = ..., time: _Optional[float] = ...) -> None: ...

class HistoryEpoch(_message.Message):
    __slots__ = ("step", "epoch", "mean_loss", "train_accuracy", "validation_loss", "validation_accuracy", "learning_rate", "time")
    STEP_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MEAN_LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    step: int
    epoch: int
    mean_loss: float
    train_accuracy: float
    validation_loss: float
    validation_accuracy: float
    learning_rate: float
    time: float
    def __init__(self, step: _Optional[int] = ..., epoch: _Optional[int] = ..., mean_loss: _Optional[float] = ..., train_accuracy: _Optional[float] = ..., validation_loss: _Optional[float] = ..., validation_accuracy: _Optional[float] = ..., learning_rate: _Optional[float] = ..., time: _Optional[float] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("steps", "epochs", "stride")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedCompositeFieldContainer[HistoryStep]
    epochs: _containers.RepeatedCompositeFieldContainer[HistoryEpoch]
    stride: int
    def __init__(self, steps: _Optional[_Iterable[_Union[HistoryStep, _Mapping]]] = ..., epochs: _Optional[_Iterable[_Union[HistoryEpoch, _Mapping]]] = ..., stride: _Optional[int] = ...) -> None: ...
