"""Billing reconciliation: our invoices and payments against the payment provider's records.

Provider records come in through a :class:`~saas_tasks.billing.records.ProviderSource`
(Stripe, or the provider's export file) and are upserted by record id; the comparison is one
set-based SQL statement (:mod:`saas_tasks.billing.queries`); a run per tenant and day holds
the counts, totals and discrepancies, and a rerun replaces it in one transaction.
"""
