"""The whole relational schema: every domain's tables on one metadata, the one Alembic
migrates."""

from common.accounts.models import LoginSession, User
from common.billing.models import UsageRecord
from common.infra.orm import Base
from common.jobs.models import Job
from common.jobs.uploads import UploadedFile
from common.webhooks.models import WebhookDelivery, WebhookSecret

metadata = Base.metadata
__all__ = ["Job", "LoginSession", "UploadedFile", "UsageRecord", "User", "WebhookDelivery",
           "WebhookSecret", "metadata"]
