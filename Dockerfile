# CPU image: docker build -t tfvae . && docker run --rm -v $PWD/runs:/app/runs tfvae train --dataset mnist
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY tfvae/ tfvae/
COPY cli.py .
ENTRYPOINT ["python", "cli.py"]
CMD ["--help"]
