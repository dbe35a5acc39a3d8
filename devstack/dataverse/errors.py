"""Every error the Dataverse emulator raises on purpose. HTTP rendering happens once, in
`devstack.dataverse.http` (a `$batch` part: `devstack.dataverse.batch`), looked up by class through
`replies.error_reply`; the body is Dataverse's `{"error": {"code": "0x...", "message": "..."}}`.

    DataverseError                  base: status, code, message
    ├── BadRequest                  400  0x80060888  query syntax, unknown property in a URL
    │   ├── QueryTooComplex         400  0x80060888  a query beyond the store's limits
    │   ├── PayloadError            400  0x80048d19  a request body Dataverse cannot read
    │   └── ValidationError         400  0x80044331  a value outside a column's rules
    ├── Unauthorized                401  (no body)   missing or invalid bearer token
    ├── Forbidden                   403  0x80040220  a privilege the caller does not hold
    │   ├── AccessDenied            403  0x80048306  held, but not for this record (access check)
    │   └── NotMember               403  0x80072560  no system user for the caller
    ├── NotFound                    404  0x80040217  no record with that key
    │   ├── SegmentNotFound         404  0x8006088a  no entity set/function of that name
    │   └── DefinitionNotFound      404  0x80041102  no table or column definition of that name
    ├── MethodNotAllowed            405
    ├── PreconditionFailed          412  0x80060882  stale row version
    │   └── DuplicateRecord         412  0x80040237  create-only upsert of an existing record
    ├── Throttled                   429  0x8007232x  service protection limit, with Retry-After
    └── NotImplementedByEmulator    501              real Dataverse feature this emulator lacks
"""

from __future__ import annotations

PAYLOAD_HELP = "https://go.microsoft.com/fwlink/?linkid=2195293"


class DataverseError(Exception):
    status = 500
    code = "0x80040216"  # "An unexpected error occurred."

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(DataverseError):
    status = 400
    code = "0x80060888"

    @classmethod
    def unknown_property(cls, logical_name: str, name: str) -> BadRequest:
        return cls(
            f"Could not find a property named '{name}' on type "
            f"'Microsoft.Dynamics.CRM.{logical_name}'."
        )

    @classmethod
    def query_syntax(cls) -> BadRequest:
        return cls("Bad Request - Error in query syntax.")


class QueryTooComplex(BadRequest):
    def __init__(self) -> None:
        super().__init__("The query is too complex to be processed.")


class PayloadError(BadRequest):
    """Dataverse wraps body problems in one outer message and names the cause after it."""

    code = "0x80048d19"

    def __init__(self, entity_set: str, inner: str) -> None:
        super().__init__(
            f"Error identified in Payload provided by the user for Entity :'{entity_set}', "
            f"For more information on this error please follow this help link {PAYLOAD_HELP}"
            f"  ---->  InnerException : {inner}"
        )
        self.inner = inner


class ValidationError(BadRequest):
    code = "0x80044331"


class Unauthorized(DataverseError):
    status = 401
    code = ""


class Forbidden(DataverseError):
    status = 403
    code = "0x80040220"


class AccessDenied(Forbidden):
    """The privilege check passed, the access check for one record failed: Dataverse's
    -2147187962 ("Troubleshoot Dataverse client errors" on learn.microsoft.com), with SecLib's
    message naming the record, its owner and the access right."""

    code = "0x80048306"


class NotMember(Forbidden):
    code = "0x80072560"

    def __init__(self) -> None:
        super().__init__("The user is not a member of the organization.")


class NotFound(DataverseError):
    status = 404
    code = "0x80040217"

    @classmethod
    def record(cls, logical_name: str, key: str) -> NotFound:
        return cls(f"{logical_name} With Id = {key} Does Not Exist")


class SegmentNotFound(NotFound):
    code = "0x8006088a"

    def __init__(self, segment: str) -> None:
        super().__init__(f"Resource not found for the segment '{segment}'.")


class DefinitionNotFound(NotFound):
    """Dataverse's "... was not found in the MetadataCache" (EntityDefinitions)."""

    code = "0x80041102"


class MethodNotAllowed(DataverseError):
    status = 405
    code = "0x80060888"

    def __init__(self, method: str) -> None:
        super().__init__(f"The requested resource does not support http method '{method}'.")


class PreconditionFailed(DataverseError):
    status = 412
    code = "0x80060882"

    def __init__(
        self,
        message: str = "The version of the existing record doesn't match the RowVersion "
        "property provided.",
    ) -> None:
        super().__init__(message)


class DuplicateRecord(PreconditionFailed):
    code = "0x80040237"

    def __init__(self) -> None:
        super().__init__("A record with matching key values already exists.")


class Throttled(DataverseError):
    status = 429

    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class NotImplementedByEmulator(DataverseError):
    status = 501
    code = "0x80040216"

    def __init__(self, feature: str) -> None:
        super().__init__(f"The Dataverse emulator does not implement {feature}.")
