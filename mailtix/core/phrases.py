"""Phrases that betray automated mail: out-of-office notes, bounces, challenge/response.

Data only, read by `core.classify` and `core.bounce`. Every pattern is matched
case-insensitively against decoded text. Languages: English, French, German
and Spanish as required, plus the few others the corpus or common mail
servers (Exchange, Notes) showed us. Keep them specific: a false match turns
a customer's mail into an event nobody answers.
"""

from __future__ import annotations

import re

_FLAGS = re.IGNORECASE | re.UNICODE


def _any(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), _FLAGS)


# Subjects of vacation / out-of-office replies. Outlook and Exchange prefix the
# original subject ("Automatic reply: …", "Réponse automatique : …"); Notes
# writes "AUTO: … is out of the office" (corpus bounces/bounceparser-warning-6.eml);
# AOL appends "(Automatic Response)" (autoreply/bounceparser-aol-vacation.eml).
AUTOREPLY_SUBJECT = _any(
    # English
    r"\bout of (?:the )?office\b",
    r"\bautomatic (?:reply|response)\b",
    r"\bautomated (?:reply|response)\b",
    r"\bauto[- ]?(?:reply|response|responder)\b",
    r"^auto:\s",
    r"\bvacation (?:reply|message|notice|response)\b",
    r"^on (?:vacation|holiday|leave)\b",
    r"\[auto[- ]generated\]",  # autoreply/discourse-auto_generated_subject.eml
    # French
    r"\br[ée]ponse automatique\b",
    r"^absen(?:ce|t|te)\b\s*(?::|$)",
    r"\babsen(?:ce|t|te) du bureau\b",
    r"\bmessage d['\u2019]absence\b",
    # German
    r"\babwesenheits(?:notiz|nachricht|meldung|assistent)\b",
    r"\bautomatische (?:antwort|r[üu]ckantwort|nachricht)\b",
    r"\bnicht im b[üu]ro\b",
    r"^abwesend\b",
    # Spanish
    r"\brespuesta autom[áa]tica\b",
    r"\bfuera de (?:la )?oficina\b",
    r"^ausente\b",
    # Others seen in the wild (Polish: autoreply/bounceparser-polish-autoreply.eml)
    r"\bautomatyczna odpowied[źz]\b",
    r"\bautomatisch antwoord\b",
    r"\brisposta automatica\b",
    r"\bresposta autom[áa]tica\b",
)

# Sentences an auto-responder writes about itself: enough on their own.
AUTOREPLY_DECLARATION = _any(
    r"\bthis is an? auto(?:matic|mated|matically generated)?[- ]?(?:reply|response|message)\b",
    r"\bthis (?:e-?mail|message) (?:is|was) (?:an )?auto(?:matic(?:ally)?|mated)"
    r"(?:ly)?[- ]?(?:generated|sent|reply|response)",
    r"\bnote: this is an automated response\b",
    r"\bceci est une? (?:r[ée]ponse|message) automatique\b",
    r"\bdies ist eine automatische (?:antwort|nachricht|benachrichtigung|abwesenheitsnotiz)\b",
    r"\bdiese (?:nachricht|e-?mail) wurde automatisch (?:generiert|erstellt|versendet)\b",
    r"\b[ée]sta es una respuesta autom[áa]tica\b",
    r"\beste (?:es un )?mensaje (?:es )?autom[áa]tico\b",
)

# "I am away" sentences: a person could write these too, so classify only
# trusts them in a short reply that also has an auto-responder's cue
# (see classify._autoreply_body).
OUT_OF_OFFICE_BODY = _any(
    r"\bI(?:'m| am| will be|\u2019m) (?:currently |now )?(?:out of (?:the )?office|away from "
    r"(?:the |my )?(?:office|desk|e-?mail)|on (?:vacation|holiday|annual leave|leave|"
    r"parental leave|maternity leave|sick leave)|away until|out until)",
    r"\bI am (?:currently )?away\b",
    r"\bI(?:'m| am) (?:currently )?out of the country\b",
    r"\bje (?:suis|serai) (?:actuellement )?"
    r"(?:absente?|en cong[ée]s?|en vacances|hors du bureau)\b",
    r"\bich bin (?:derzeit |zurzeit |momentan |bis .{1,40}?)?(?:nicht im b[üu]ro|abwesend|"
    r"im urlaub|au[ßs]er haus)\b",
    r"\bestoy (?:actualmente )?(?:fuera de (?:la )?oficina|de vacaciones|ausente)\b",
    r"\bestar[ée] (?:fuera de (?:la )?oficina|de vacaciones|ausente)\b",
)

# What auto-responders add to "I am away": whom to ask meanwhile, when they
# will answer. A person's "I'm on vacation until Monday, go ahead" has none of it.
OUT_OF_OFFICE_CUE = _any(
    r"\b(?:upon|on|after) my return\b",
    r"\bwhen I (?:return|get back|am back)\b",
    r"\blimited access to (?:my )?e-?mail",
    r"\b(?:for|in case of|with) (?:urgent|immediate)\b",
    r"\bif (?:it|this|your (?:matter|request|message)) is urgent\b",
    r"\bplease contact\b",
    r"\b(?:will|shall) (?:be )?(?:respond|reply|answer|get back|read)",
    r"\b[àa] mon retour\b",
    r"\bpour toute (?:urgence|demande urgente)\b",
    r"\ben cas d['\u2019]urgence\b",
    r"\bacc[èe]s limit[ée]\b",
    r"\bnach meiner r[üu]ckkehr\b",
    r"\bin dringenden f[äa]llen\b",
    r"\bwenden sie sich\b",
    r"\bab dem .{1,30} wieder\b",
    r"\ba mi regreso\b",
    r"\b(?:para|en caso de) (?:asuntos )?urgen(?:tes|cia)\b",
    r"\bacceso limitado\b",
    r"\bp[óo]ngase en contacto\b",
)

# Subjects of delivery failures from MTAs that do not send RFC 3464 reports
# (corpus bounces/: sendmail, Exim, qmail, Exchange 2003, Notes, Novell, InterScan…).
BOUNCE_SUBJECT = _any(
    r"^undeliver(?:ed|able)\b",
    r"^undelivered mail returned to sender\b",
    r"^returned mail\b",
    r"^mail delivery (?:failed|failure|problem)\b",
    r"^mail system error\b",
    r"^delivery (?:status notification|failure|failed|has failed)",
    r"^delivery notification: delivery has failed",
    r"^delivery status notification: error\b",
    r"^(?:permanent )?delivery failure\b",
    r"^failed delivery\b",
    r"^failure notice\b",
    r"^message (?:delivery has failed|status - undeliverable|not delivered)\b",
    r"^(?:non-?delivery|nondeliverable) ",
    r"^mail could not be delivered\b",
    r"^there was an error sending your mail\b",
    r"^warning: could not send message\b",
    r"^returned mail: ",
    # Exchange in other languages: German, French, Spanish, Dutch, Italian.
    r"^unzustellbar\s*:",
    r"^non remis\s*:",
    r"^non distribuable\s*:",
    r"^no se puede entregar\s*:",
    r"^onbestelbaar\s*:",
    r"^non recapitabile\s*:",
)

# What the non-quoted text of a delivery failure says.
BOUNCE_BODY = _any(
    r"\bcould not be delivered\b",
    r"\bcouldn['\u2019]t be delivered\b",
    r"\bwas not delivered\b",
    r"\bdelivery (?:has )?failed\b",
    r"\bdelivery to the following recipients? failed\b",
    r"\bfailed permanently\b",
    r"\bpermanent fatal errors?\b",
    r"\bfollowing address(?:\(es\)|es)? failed\b",
    r"\bthis is the mail system at host\b",
    r"\bthis is the qmail-send program\b",
    r"\bunable to deliver\b",
    r"\bundeliverable\b",
    r"\bdid not reach some or all of the intended recipients\b",
    r"\bcould not deliver\b",
    r"\bwasn['\u2019]t able to deliver\b",
    r"\breturned to sender\b",
    r"\bmessage could not be sent\b",
    r"\bthe original message was received at\b",
    r"\bnon-?delivery (?:report|notification)\b",
    r"\bsmtp error from remote mail server\b",
    r"\bdoes not like recipient\b",
    r"\bno such (?:user|mailbox|recipient)\b",
    r"\buser unknown\b",
    r"\bnot a valid (?:user|recipient|mailbox)\b",  # bounces/bounceparser-warning-5.eml
    r"\binvalid (?:user|recipient) address\b",
    r"\bdelivery status notification\b",
    r"\bdelivery to the following recipients? (?:was aborted|has been delayed)",
)

# Challenge/response systems ask the sender to prove they are a person before
# the mail is delivered. They dress up as bounces (a multipart/report in
# autoreply/bounceparser-boxbe-cr.eml, a Postfix DSN in
# autoreply/bounceparser-whitelist.eml), but the recipient exists.
CHALLENGE_RESPONSE = _any(
    r"\bchallenge[- /]response\b",
    r"\bsender not pre-?approved\b",
    r"\b(?:has been|was) waitlisted\b",
    r"\byour server requires confirmation\b",
    r"\badded to the recipient['\u2019]s (?:allowed|approved) (?:list|senders)\b",
    r"\bverify (?:that )?you are (?:a )?(?:real )?(?:person|human)\b",
    r"\bplease (?:click|follow) .{0,40}link .{0,60}(?:verif|confirm|approv)",
    r"\b(?:spam ?arrest|boxbe|bluebottle|mailblocks|sendio)\b",
)

# Subject prefixes a person's mail client puts on a forwarded message.
FORWARD_PREFIX = re.compile(r"^\s*(?:fwd?|tr|wg|rv|enc|i)\s*:", _FLAGS)
# Prefixes of a reply ("Re:", "AW:", "Antwort:", "SV:", "RE :"...).
REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|antw(?:ort)?|sv|vs|odp|r)\s*:", _FLAGS)
