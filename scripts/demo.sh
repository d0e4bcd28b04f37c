#!/usr/bin/env bash
# Install automc into .venv if needed, then run the main job on the embedded default:
# resnet20 on the embedded digits data, joint pruning+quantization+low-rank search under
# a MACs budget, the shipped 2-core CPU profile of ONNX Runtime for this CPU (fp32 and int8 kernels: the search
# prices 8-bit layers at int8 speed), fine-tune the Pareto winners, write the report.
# Extra arguments go to `automc search`.
source "$(dirname "$0")/_venv.sh"
exec automc search --model resnet20 --dataset digits --space search_spaces/joint.yaml \
    --budget flops=0.3 --objectives acc,macs,latency --controller optuna-tpe --trials 120 \
    --profile auto --finetune-top 3 --finetune-epochs 4 \
    --out reports/demo "$@"
