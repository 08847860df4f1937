#!/usr/bin/python3
"""The CRM flow from Python: capture a lead, qualify and convert it, work the
opportunity in sales, open a service ticket, then read the customer's 360
view from analytics.

Stubs are generated from proto/ with the system protoc and grpc_python_plugin
(Debian: protobuf-compiler-grpc, python3-grpcio, python3-protobuf):

    /usr/bin/python3 examples/python/crm_flow.py            # against ./crm up

Endpoints default to the ports ./crm up uses; override with CRM_LEADS,
CRM_SALES, CRM_SERVICE_DESK, CRM_ANALYTICS (host:port).

Every call carries a bearer token: CRM_TOKEN if set (e.g. from
`build/tools/crmctl token --sub=me --roles=admin`), else one minted here with
HS256 from CRM_JWT_HS256_KEY or the development key of ./crm up (dev only).
"""
import base64
import hashlib
import hmac
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]


def generate_stubs() -> str:
    out = tempfile.mkdtemp(prefix="crm-py-")
    protos = sorted(str(p) for p in (ROOT / "proto" / "crm" / "v1").glob("*.proto"))
    subprocess.run(
        ["protoc", f"-I{ROOT / 'proto'}", f"--python_out={out}", f"--grpc_out={out}",
         "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin", *protos],
        check=True)
    return out


sys.path.insert(0, generate_stubs())
import grpc  # noqa: E402
from crm.v1 import analytics_pb2, analytics_pb2_grpc  # noqa: E402
from crm.v1 import common_pb2  # noqa: E402
from crm.v1 import leads_pb2, leads_pb2_grpc  # noqa: E402
from crm.v1 import sales_pb2, sales_pb2_grpc  # noqa: E402
from crm.v1 import service_desk_pb2, service_desk_pb2_grpc  # noqa: E402


# The development key ./crm up and the tests use (libs/common/auth/dev_key.h).
DEV_KEY = "crm-dev-only-hs256-key--do-not-use-in-production"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(sub: str, roles: list, territory: str = "", ttl_s: int = 3600) -> str:
    """An HS256 JWT as the services expect it (issuer crm-dev, audience crm)."""
    now = int(time.time())
    claims = {"iss": os.environ.get("CRM_JWT_ISSUER", "crm-dev"),
              "aud": os.environ.get("CRM_JWT_AUDIENCE", "crm"),
              "sub": sub, "roles": roles, "iat": now, "exp": now + ttl_s}
    if territory:
        claims["territory"] = territory
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode())
        for part in ({"alg": "HS256", "typ": "JWT"}, claims))
    key = os.environ.get("CRM_JWT_HS256_KEY", DEV_KEY).encode()
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


class BearerToken(grpc.UnaryUnaryClientInterceptor):
    """Adds `authorization: Bearer <token>` to every unary call."""

    def __init__(self, token: str):
        self._metadata = (("authorization", f"Bearer {token}"),)

    def intercept_unary_unary(self, continuation, details, request):
        details = details._replace(metadata=tuple(details.metadata or ()) + self._metadata)
        return continuation(details, request)


TOKEN = os.environ.get("CRM_TOKEN") or mint_token("crm-flow-example", ["admin"])


def endpoint(name: str, default: str) -> grpc.Channel:
    channel = grpc.insecure_channel(os.environ.get(name, default))
    return grpc.intercept_channel(channel, BearerToken(TOKEN))


def rid(what: str) -> str:
    """A request id: retrying a call with the same id is safe."""
    return f"{what}-{uuid.uuid4()}"


def main() -> int:
    leads = leads_pb2_grpc.LeadsServiceStub(endpoint("CRM_LEADS", "127.0.0.1:50051"))
    sales = sales_pb2_grpc.SalesServiceStub(endpoint("CRM_SALES", "127.0.0.1:50052"))
    desk = service_desk_pb2_grpc.ServiceDeskServiceStub(
        endpoint("CRM_SERVICE_DESK", "127.0.0.1:50053"))
    analytics = analytics_pb2_grpc.AnalyticsServiceStub(
        endpoint("CRM_ANALYTICS", "127.0.0.1:50054"))
    email = f"ada.{uuid.uuid4().hex[:8]}@example.com"

    # Without a token the services answer UNAUTHENTICATED.
    bare = leads_pb2_grpc.LeadsServiceStub(
        grpc.insecure_channel(os.environ.get("CRM_LEADS", "127.0.0.1:50051")))
    try:
        bare.ListLeads(leads_pb2.ListLeadsRequest())
        print("a call without a bearer token was accepted", file=sys.stderr)
        return 1
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNAUTHENTICATED:
            raise

    captured = leads.CaptureLead(leads_pb2.CaptureLeadRequest(
        request_id=rid("capture"), channel=leads_pb2.LEAD_CHANNEL_TRADE_SHOW,
        contact=leads_pb2.Contact(first_name="Ada", last_name="Lovelace", email=email),
        company="Analytical Engines", region="EMEA", product_interests=["crm-suite"]))
    customer_id = captured.customer_id
    print(f"lead {captured.lead_id} captured for customer {customer_id}")

    lead = leads.GetLead(leads_pb2.GetLeadRequest(lead_id=captured.lead_id))
    lead = leads.QualifyLead(leads_pb2.QualifyLeadRequest(
        request_id=rid("qualify"), lead_id=lead.lead_id, expected_version=lead.version))
    converted = leads.ConvertLead(leads_pb2.ConvertLeadRequest(
        request_id=rid("convert"), lead_id=lead.lead_id, expected_version=lead.version,
        owner_id=lead.owner_id or "rep-ada",
        estimated_amount=common_pb2.Money(currency="EUR", minor_units=12_000_00)))
    print(f"lead converted (event {converted.conversion_event_id})")

    # Sales opens the account and the opportunity when it consumes LeadConverted.
    opportunity = None
    for _ in range(100):
        found = sales.ListOpportunities(sales_pb2.ListOpportunitiesRequest(customer_id=customer_id))
        if found.opportunities:
            opportunity = found.opportunities[0]
            break
        time.sleep(0.1)
    if opportunity is None:
        print("sales did not open an opportunity for the converted lead", file=sys.stderr)
        return 1
    for stage in ("needs_analysis", "proposal"):
        opportunity = sales.ChangeOpportunityStage(sales_pb2.ChangeOpportunityStageRequest(
            request_id=rid("stage"), opportunity_id=opportunity.opportunity_id,
            expected_version=opportunity.version, stage_id=stage))
    print(f"opportunity {opportunity.opportunity_id} at stage {opportunity.stage_id}")

    ticket = desk.OpenTicket(service_desk_pb2.OpenTicketRequest(
        request_id=rid("ticket"), customer_id=customer_id,
        channel=service_desk_pb2.TICKET_CHANNEL_EMAIL, subject="Cannot log in",
        description="The portal rejects my password.", product="crm-suite",
        priority=service_desk_pb2.TICKET_PRIORITY_HIGH, category="access"))
    print(f"ticket {ticket.ticket_id} opened")

    # Analytics folds every topic into the 360 view; wait for all of it.
    view = None
    for _ in range(150):
        try:
            view = analytics.GetCustomer360(
                analytics_pb2.GetCustomer360Request(customer_id=customer_id))
            types = {entry.type for entry in view.timeline}
            if {"LeadConverted", "OpportunityStageChanged", "TicketOpened"} <= types:
                break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
        time.sleep(0.1)
    if view is None:
        print("analytics never saw the customer", file=sys.stderr)
        return 1
    print(f"360 view of {customer_id}: {view.event_count} events")
    for entry in view.timeline:
        print(f"  {entry.type:28} {entry.summary}")
    types = {entry.type for entry in view.timeline}
    missing = {"LeadCaptured", "LeadConverted", "OpportunityStageChanged", "TicketOpened"} - types
    if missing:
        print(f"missing from the 360 timeline: {sorted(missing)}", file=sys.stderr)
        return 1
    print("flow complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
