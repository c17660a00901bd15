"""The functions an analyst query may call: an allow-list, nothing else.

Names are ClickHouse's own spelling and are matched exactly (ClickHouse
resolves function names case-sensitively); :data:`CASE_INSENSITIVE` holds the
few ClickHouse also accepts in any case (SQL-standard aliases), matched
lower-cased. Table functions are never allowed (they are not expressions);
nothing here reads files, the network, dictionaries, other tables, settings
or the server's state (no ``dictGet``, ``joinGet``, ``file``, ``url``,
``currentDatabase``, ``getSetting``, ``hostName``, ``sleep``, ``throwIf`` ...).
"""

from __future__ import annotations

__all__ = ["AGGREGATE_COMBINATORS", "ALLOWED_FUNCTIONS", "CASE_INSENSITIVE", "is_allowed_function"]

_AGGREGATES = """
count sum avg min max any anyLast anyHeavy argMin argMax uniq uniqExact uniqCombined uniqCombined64
uniqHLL12 uniqTheta groupArray groupUniqArray groupArraySample groupArraySorted groupBitAnd
groupBitOr groupBitXor sumWithOverflow sumKahan avgWeighted median medianExact quantile
quantiles quantileExact quantilesExact quantileExactLow quantileExactHigh quantileExactWeighted
quantileExactInclusive quantileExactExclusive quantilesExactInclusive quantilesExactExclusive
quantileTiming quantileTDigest quantilesTDigest quantileTDigestWeighted quantileDeterministic
quantileBFloat16 quantileDD quantilesDD quantileGK stddevPop stddevSamp varPop varSamp covarPop
covarSamp corr topK topKWeighted simpleLinearRegression skewPop skewSamp kurtPop kurtSamp
histogram sequenceMatch sequenceCount windowFunnel retention first_value last_value nth_value
row_number rank dense_rank percent_rank cume_dist lagInFrame leadInFrame ntile
boundingRatio deltaSum entropy maxIntersections
welchTTest studentTTest
"""

_SCALARS = """
abs ceil ceiling floor round roundBankers roundDown roundToExp2 trunc truncate exp exp2 exp10
log ln log2 log10 log1p sqrt cbrt pow power sign sin cos tan asin acos atan atan2 pi e
intDiv intDivOrZero modulo moduloOrZero negate gcd lcm greatest least plus minus multiply divide
isNaN isFinite isInfinite ifNotFinite
proportionsZTest
if multiIf coalesce ifNull nullIf assumeNotNull toNullable isNull isNotNull isZeroOrNull
and or not xor equals notEquals less greater lessOrEquals greaterOrEquals
toInt8 toInt16 toInt32 toInt64 toUInt8 toUInt16 toUInt32 toUInt64 toFloat32 toFloat64
toInt64OrZero toInt64OrNull toUInt64OrZero toUInt64OrNull toFloat64OrZero toFloat64OrNull
toDecimal32 toDecimal64 toDecimal128 toString toFixedString toUUID toBool
toDate toDate32 toDateTime toDateTime64 toDateOrNull toDateTimeOrNull parseDateTimeBestEffort
parseDateTimeBestEffortOrNull parseDateTime64BestEffort
toTypeName toColumnTypeName
now now64 today yesterday toYear toQuarter toMonth toWeek toISOWeek toDayOfYear toDayOfMonth
toDayOfWeek toHour toMinute toSecond toUnixTimestamp toUnixTimestamp64Milli toStartOfYear
toStartOfQuarter toStartOfMonth toStartOfWeek toMonday toStartOfDay toStartOfHour
toStartOfMinute toStartOfSecond toStartOfFiveMinutes toStartOfTenMinutes
toStartOfFifteenMinutes toStartOfInterval toYYYYMM toYYYYMMDD toYYYYMMDDhhmmss
toRelativeDayNum toRelativeHourNum toRelativeMinuteNum toRelativeSecondNum
toIntervalSecond toIntervalMinute toIntervalHour toIntervalDay toIntervalWeek
toIntervalMonth toIntervalQuarter toIntervalYear toIntervalMillisecond
addSeconds addMinutes addHours addDays addWeeks addMonths addYears subtractSeconds
subtractMinutes subtractHours subtractDays subtractWeeks subtractMonths subtractYears
dateDiff date_diff dateTrunc date_trunc dateAdd date_add dateSub date_sub timeSlot
formatDateTime formatDateTimeInJodaSyntax fromUnixTimestamp fromUnixTimestamp64Milli
toTimeZone toTimezone age
length empty notEmpty lengthUTF8 char_length lower upper lowerUTF8 upperUTF8 reverse
reverseUTF8 concat concatWithSeparator substring substr substringUTF8 left right leftUTF8
rightUTF8 trim trimLeft trimRight trimBoth ltrim rtrim leftPad rightPad lpad rpad repeat
startsWith endsWith position positionCaseInsensitive positionUTF8 locate like notLike ilike
notILike match extract extractAll extractGroups replaceOne replaceAll replace
replaceRegexpOne replaceRegexpAll splitByChar splitByString splitByRegexp splitByWhitespace
arrayStringConcat format toValidUTF8 base64Encode base64Decode hex unhex lowerUTF8
multiSearchAny multiSearchFirstIndex multiMatchAny countSubstrings countMatches
JSONExtractString JSONExtractInt JSONExtractFloat JSONExtractBool JSONExtractRaw JSONHas
JSONLength JSONExtractKeys JSONType JSONExtract simpleJSONExtractString simpleJSONHas
simpleJSONExtractInt simpleJSONExtractFloat simpleJSONExtractRaw isValidJSON
domain domainWithoutWWW protocol path topLevelDomain cutQueryString
array arrayConcat arrayElement has hasAll hasAny indexOf arrayCount arrayMap arrayFilter
arrayExists arrayAll arraySum arrayAvg arrayMin arrayMax arraySort arrayReverseSort
arrayDistinct arrayUniq arrayJoin arrayEnumerate arraySlice arrayPushBack arrayPushFront
arrayPopBack arrayPopFront arrayReverse arrayFlatten arrayCompact arrayZip arrayFirst
arrayLast arrayCumSum arrayDifference arrayReduce arrayIntersect emptyArrayString
tuple tupleElement untuple map mapKeys mapValues mapContains
cityHash64 sipHash64 xxHash64 murmurHash3_64 MD5 SHA256 farmHash64
bar formatReadableSize formatReadableQuantity formatReadableTimeDelta
generateUUIDv4 toUUIDOrNull isValidUTF8
runningDifference neighbor
"""

#: every allowed function, ClickHouse's spelling
ALLOWED_FUNCTIONS: frozenset[str] = frozenset((_AGGREGATES + _SCALARS).split())

#: aggregate combinator suffixes (``countIf``, ``uniqExactIf``, ``sumArray``, ``avgOrNull``...)
AGGREGATE_COMBINATORS = ("If", "Array", "Distinct", "OrNull", "OrDefault", "Merge", "State")

_AGGREGATE_NAMES = frozenset(_AGGREGATES.split())

_CASE_INSENSITIVE_NAMES = """
count sum avg min max abs ceil ceiling floor round trunc truncate exp log ln sqrt pow
power sign sin cos tan asin acos atan pi if coalesce ifNull nullIf greatest least length
lower upper lcase ucase concat substring substr trim ltrim rtrim lpad rpad position locate
replace reverse left right repeat char_length now today date_trunc date_diff date_add
date_sub cast case extract interval rank dense_rank row_number percent_rank cume_dist
ntile first_value last_value nth_value corr covarPop covarSamp stddevPop stddevSamp varPop
varSamp
"""

#: names ClickHouse resolves in any case (SQL-standard spellings): matched lower-cased
CASE_INSENSITIVE: frozenset[str] = frozenset(n.lower() for n in _CASE_INSENSITIVE_NAMES.split())


def _base_aggregate(name: str) -> str | None:
    """``uniqExactIf`` → ``uniqExact``; None when no combinator applies to an aggregate."""
    for suffix in AGGREGATE_COMBINATORS:
        if name.endswith(suffix) and len(name) > len(suffix):
            base = name[: -len(suffix)]
            if base in _AGGREGATE_NAMES or _base_aggregate(base) is not None:
                return base
    return None


def is_allowed_function(name: str) -> bool:
    """True when an analyst query may call ``name``."""
    if name in ALLOWED_FUNCTIONS or name.lower() in CASE_INSENSITIVE:
        return True
    return _base_aggregate(name) is not None
