# tfvae: the CLI in a container (train, evaluate, sample, export, generate).
#   CPU (default):  docker build -t tfvae .
#   GPU:            docker build --build-arg BASE=tensorflow/tensorflow:2.21.0-gpu -t tfvae:gpu .
#                   docker run --gpus all ... tfvae:gpu train --dataset mnist
# Mount runs/ and exported/ (and a TFDS data folder) so results outlive the container.
ARG BASE=python:3.11-slim
FROM ${BASE}
WORKDIR /app
COPY requirements.txt .
# On the GPU base TensorFlow 2.21.0 is already installed with its CUDA libraries, and the
# pinned tensorflow==2.21.0 is then satisfied as it is.
RUN pip install --no-cache-dir -r requirements.txt
COPY tfvae/ tfvae/
COPY cli.py .
ENV TF_CPP_MIN_LOG_LEVEL=2
ENTRYPOINT ["python", "cli.py"]
CMD ["--help"]
