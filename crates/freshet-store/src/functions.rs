//! Aggregates that Data Explorer users reach for, in the SQL dialect:
//! `countif(predicate)`, `dcount(x)` (HyperLogLog, DataFusion's
//! `approx_distinct`), `take_any(x)` (`any_value`), and
//! `arg_max(maximize, value)` / `arg_min(minimize, value)`, which return
//! `value` from the row where `maximize` is largest (smallest) — Data
//! Explorer's argument order. All keep mergeable states, so materialized
//! views can fold them.
//!
//! DataFusion has no count-if and no arg-max aggregate, hence the two
//! accumulators here.

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, make_comparator};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::compute::kernels::aggregate::sum;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::functions_aggregate::{
    any_value::any_value_udaf, approx_distinct::approx_distinct_udaf,
};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;

/// Adds the store's aggregates to a session.
pub fn register(context: &SessionContext) -> Result<()> {
    context.register_udaf(AggregateUDF::from(CountIf::new()));
    context.register_udaf(AggregateUDF::from(ArgExtreme::new(Ordering::Greater)));
    context.register_udaf(AggregateUDF::from(ArgExtreme::new(Ordering::Less)));
    context.register_udaf(
        approx_distinct_udaf()
            .as_ref()
            .clone()
            .with_aliases(["dcount"]),
    );
    context.register_udaf(any_value_udaf().as_ref().clone().with_aliases(["take_any"]));
    // Fails loudly at start-up rather than at the first query if a name clashes.
    for name in ["countif", "arg_max", "arg_min", "dcount", "take_any"] {
        context.udaf(name)?;
    }
    Ok(())
}

/// `countif(predicate)`: rows where the predicate is true.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CountIf {
    signature: Signature,
}

impl CountIf {
    fn new() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Boolean], Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for CountIf {
    fn name(&self) -> &str {
        "countif"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(CountIfAccumulator { count: 0 }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[count]", args.name),
            DataType::Int64,
            false,
        ))])
    }

    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(0)))
    }
}

#[derive(Debug)]
struct CountIfAccumulator {
    count: i64,
}

impl Accumulator for CountIfAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(predicate) = values[0].as_any().downcast_ref::<BooleanArray>() else {
            return exec_err!("countif takes a boolean predicate");
        };
        self.count += predicate.true_count() as i64;
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.count += sum(states[0].as_primitive::<Int64Type>()).unwrap_or(0);
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Int64(Some(self.count))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.count)))
    }

    fn size(&self) -> usize {
        size_of_val(self)
    }
}

/// `arg_max(by, value)` (`want` = Greater) or `arg_min(by, value)` (Less).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ArgExtreme {
    signature: Signature,
    want: Ordering,
}

impl ArgExtreme {
    fn new(want: Ordering) -> Self {
        Self {
            signature: Signature::new(TypeSignature::Any(2), Volatility::Immutable),
            want,
        }
    }
}

impl AggregateUDFImpl for ArgExtreme {
    fn name(&self) -> &str {
        if self.want == Ordering::Greater {
            "arg_max"
        } else {
            "arg_min"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[1].clone())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let by = ScalarValue::try_from(args.expr_fields[0].data_type())?;
        let value = ScalarValue::try_from(args.expr_fields[1].data_type())?;
        Ok(Box::new(ArgExtremeAccumulator {
            want: self.want,
            by,
            value,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[by]", args.name),
                args.input_fields[0].data_type().clone(),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[value]", args.name),
                args.input_fields[1].data_type().clone(),
                true,
            )),
        ])
    }
}

#[derive(Debug)]
struct ArgExtremeAccumulator {
    want: Ordering,
    /// The extreme seen so far (null before any row).
    by: ScalarValue,
    value: ScalarValue,
}

impl ArgExtremeAccumulator {
    /// Keeps the row of `by` that beats the current extreme, if any.
    fn fold(&mut self, by: &ArrayRef, value: &ArrayRef) -> Result<()> {
        let options = SortOptions {
            descending: false,
            nulls_first: true,
        };
        let compare = make_comparator(by.as_ref(), by.as_ref(), options)?;
        let mut best: Option<usize> = None;
        for row in 0..by.len() {
            if by.is_null(row) {
                continue;
            }
            if best.is_none_or(|b| compare(row, b) == self.want) {
                best = Some(row);
            }
        }
        let Some(best) = best else { return Ok(()) };
        let candidate = ScalarValue::try_from_array(by, best)?;
        if self.by.is_null() || candidate.partial_cmp(&self.by) == Some(self.want) {
            self.by = candidate;
            self.value = ScalarValue::try_from_array(value, best)?;
        }
        Ok(())
    }
}

impl Accumulator for ArgExtremeAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.fold(&values[0], &values[1])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.fold(&states[0], &states[1])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.by.clone(), self.value.clone()])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.by.size() + self.value.size()
    }
}
