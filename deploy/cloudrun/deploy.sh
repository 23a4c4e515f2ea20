#!/usr/bin/env bash
# mlflow-gateway on Google Cloud Run, from an empty project to a working sign-in. Run from the
# repository root, with gcloud signed in as a project owner:
#
#   PROJECT_ID=my-project REGION=europe-west1 bash deploy/cloudrun/deploy.sh
#
# What it creates (each step is skipped when its resource exists, so a re-run only updates):
#   - Artifact Registry repository "mlflow-gateway" with both images (built by Cloud Build)
#   - GCS bucket for artifacts, written only by MLflow's service account
#   - Cloud SQL PostgreSQL 16 with databases "mlflow" (MLflow) and "gateway" (users, tokens, policy)
#   - Memorystore Redis (sessions, lockout, audit stream)
#   - Secret Manager secrets for every password and URL holding one
#   - Cloud Run service "mlflow": ingress internal, reachable only through the VPC
#   - Cloud Run service "mlflow-gateway": public, all egress through the VPC
# The admin password is generated once and kept in Secret Manager (printed command shows it).
set -euo pipefail

: "${PROJECT_ID:?set PROJECT_ID to your Google Cloud project}"
: "${REGION:?set REGION, e.g. europe-west1}"
SQL_INSTANCE="${SQL_INSTANCE:-mlflow}"
REDIS_INSTANCE="${REDIS_INSTANCE:-mlflow-gateway}"
ARTIFACT_BUCKET="${ARTIFACT_BUCKET:-${PROJECT_ID}-mlflow-artifacts}"
VPC_NETWORK="${VPC_NETWORK:-default}"
VPC_SUBNET="${VPC_SUBNET:-default}"
REGISTRY="${REGION}-docker.pkg.dev/${PROJECT_ID}/mlflow-gateway"
MLFLOW_SA="mlflow-server@${PROJECT_ID}.iam.gserviceaccount.com"
GATEWAY_SA="mlflow-gateway@${PROJECT_ID}.iam.gserviceaccount.com"
HERE="$(cd "$(dirname "$0")" && pwd)"
RENDERED="$(mktemp -d)"
trap 'rm -rf "$RENDERED"' EXIT

step() { printf '\n== %s\n' "$*"; }
random_password() { openssl rand -hex 24; }

# A secret's first version from stdin, unless the secret exists; then who may read it.
secret() {
    local name="$1" reader="$2"
    if ! gcloud secrets describe "$name" >/dev/null 2>&1; then
        gcloud secrets create "$name" --replication-policy=automatic --data-file=-
    else
        cat >/dev/null
    fi
    gcloud secrets add-iam-policy-binding "$name" --quiet \
        --member="serviceAccount:${reader}" --role=roles/secretmanager.secretAccessor >/dev/null
}

step "project and APIs"
gcloud config set project "$PROJECT_ID"
gcloud services enable run.googleapis.com sqladmin.googleapis.com redis.googleapis.com \
    artifactregistry.googleapis.com cloudbuild.googleapis.com secretmanager.googleapis.com \
    servicenetworking.googleapis.com compute.googleapis.com
PROJECT_NUMBER="$(gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)')"

step "images"
if ! gcloud artifacts repositories describe mlflow-gateway --location="$REGION" >/dev/null 2>&1; then
    gcloud artifacts repositories create mlflow-gateway --repository-format=docker \
        --location="$REGION"
fi
gcloud builds submit --tag "${REGISTRY}/gateway:0.1.0" .
# The MLflow image's build checks the gateway's route table against the MLflow it installs
# (docs/upgrading-mlflow.md): it is built from the repository with mlflow/Dockerfile, which
# `--tag` cannot name, so Cloud Build runs the docker build itself.
mlflow_build="$(mktemp)"
cat > "$mlflow_build" <<BUILD
steps:
  - name: gcr.io/cloud-builders/docker
    env: ["DOCKER_BUILDKIT=1"]
    args: ["build", "-f", "mlflow/Dockerfile", "-t", "${REGISTRY}/mlflow:3.17.2", "."]
images: ["${REGISTRY}/mlflow:3.17.2"]
BUILD
gcloud builds submit --config "$mlflow_build" .
rm -f "$mlflow_build"

step "service accounts"
for account in mlflow-server mlflow-gateway; do
    if ! gcloud iam service-accounts describe "${account}@${PROJECT_ID}.iam.gserviceaccount.com" \
        >/dev/null 2>&1; then
        gcloud iam service-accounts create "$account"
    fi
done
gcloud projects add-iam-policy-binding "$PROJECT_ID" --quiet \
    --member="serviceAccount:${MLFLOW_SA}" --role=roles/cloudsql.client >/dev/null

step "artifact bucket gs://${ARTIFACT_BUCKET}"
if ! gcloud storage buckets describe "gs://${ARTIFACT_BUCKET}" >/dev/null 2>&1; then
    gcloud storage buckets create "gs://${ARTIFACT_BUCKET}" --location="$REGION" \
        --uniform-bucket-level-access --public-access-prevention
fi
gcloud storage buckets add-iam-policy-binding "gs://${ARTIFACT_BUCKET}" \
    --member="serviceAccount:${MLFLOW_SA}" --role=roles/storage.objectAdmin >/dev/null

step "private services access on ${VPC_NETWORK} (Cloud SQL private IP, Memorystore)"
if ! gcloud compute addresses describe google-managed-services --global >/dev/null 2>&1; then
    gcloud compute addresses create google-managed-services --global --purpose=VPC_PEERING \
        --prefix-length=16 --network="$VPC_NETWORK"
    gcloud services vpc-peerings connect --service=servicenetworking.googleapis.com \
        --ranges=google-managed-services --network="$VPC_NETWORK"
fi

step "Cloud SQL PostgreSQL ${SQL_INSTANCE}"
if ! gcloud sql instances describe "$SQL_INSTANCE" >/dev/null 2>&1; then
    gcloud sql instances create "$SQL_INSTANCE" --database-version=POSTGRES_16 \
        --region="$REGION" --tier=db-custom-1-3840 \
        --network="projects/${PROJECT_ID}/global/networks/${VPC_NETWORK}"
fi
for database in mlflow gateway; do
    if ! gcloud sql databases describe "$database" --instance="$SQL_INSTANCE" >/dev/null 2>&1; then
        gcloud sql databases create "$database" --instance="$SQL_INSTANCE"
    fi
done
SQL_PRIVATE_IP="$(gcloud sql instances describe "$SQL_INSTANCE" \
    --format='value(ipAddresses.filter("type:PRIVATE").extract(ipAddress).flatten())')"
for user in mlflow gateway; do
    if ! gcloud secrets describe "${user}-db-password" >/dev/null 2>&1; then
        password="$(random_password)"
        gcloud sql users create "$user" --instance="$SQL_INSTANCE" --password="$password"
        printf '%s' "$password" | gcloud secrets create "${user}-db-password" \
            --replication-policy=automatic --data-file=-
    fi
done
MLFLOW_DB_PASSWORD="$(gcloud secrets versions access latest --secret=mlflow-db-password)"
GATEWAY_DB_PASSWORD="$(gcloud secrets versions access latest --secret=gateway-db-password)"

step "Memorystore Redis ${REDIS_INSTANCE}"
if ! gcloud redis instances describe "$REDIS_INSTANCE" --region="$REGION" >/dev/null 2>&1; then
    gcloud redis instances create "$REDIS_INSTANCE" --region="$REGION" --size=1 \
        --network="projects/${PROJECT_ID}/global/networks/${VPC_NETWORK}" \
        --connect-mode=PRIVATE_SERVICE_ACCESS
fi
REDIS_HOST="$(gcloud redis instances describe "$REDIS_INSTANCE" --region="$REGION" \
    --format='value(host)')"

step "secrets"
printf '%s' "postgresql://mlflow:${MLFLOW_DB_PASSWORD}@/mlflow?host=/cloudsql/${PROJECT_ID}:${REGION}:${SQL_INSTANCE}" \
    | secret mlflow-backend-store-uri "$MLFLOW_SA"
printf '%s' "postgresql://gateway:${GATEWAY_DB_PASSWORD}@${SQL_PRIVATE_IP}:5432/gateway" \
    | secret gateway-database-url "$GATEWAY_SA"
printf '%s' "redis://${REDIS_HOST}:6379/0" | secret gateway-redis-url "$GATEWAY_SA"
random_password | secret gateway-admin-password "$GATEWAY_SA"

step "MLflow (internal ingress)"
export PROJECT_ID REGION SQL_INSTANCE ARTIFACT_BUCKET VPC_NETWORK VPC_SUBNET
envsubst <"${HERE}/mlflow.service.yaml" >"${RENDERED}/mlflow.service.yaml"
gcloud run services replace "${RENDERED}/mlflow.service.yaml" --region="$REGION"
# Invocations need no Google identity token (the gateway sends none): the fence is the ingress
# setting, which admits only traffic from the project's VPC.
gcloud run services add-iam-policy-binding mlflow --region="$REGION" \
    --member=allUsers --role=roles/run.invoker >/dev/null
MLFLOW_URL="$(gcloud run services describe mlflow --region="$REGION" --format='value(status.url)')"

step "gateway (public)"
GATEWAY_PUBLIC_URL="${GATEWAY_PUBLIC_URL:-https://mlflow-gateway-${PROJECT_NUMBER}.${REGION}.run.app}"
export MLFLOW_URL GATEWAY_PUBLIC_URL
envsubst <"${HERE}/gateway.service.yaml" >"${RENDERED}/gateway.service.yaml"
gcloud run services replace "${RENDERED}/gateway.service.yaml" --region="$REGION"
gcloud run services add-iam-policy-binding mlflow-gateway --region="$REGION" \
    --member=allUsers --role=roles/run.invoker >/dev/null

step "done"
echo "Open ${GATEWAY_PUBLIC_URL} and sign in as admin with the password from:"
echo "  gcloud secrets versions access latest --secret=gateway-admin-password"
echo "Check the deployment from inside the gateway's environment with: mlflow-gateway doctor"
